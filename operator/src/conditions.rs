//! Status conditions: `lastTransitionTime` moves only when a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Sets condition `type_` in `conds`, keeping the old transition time when the status holds.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let existing = conds.iter().position(|c| c.type_ == type_);
    let time = match existing.map(|i| &conds[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    let cond = Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: time,
    };
    match existing {
        Some(i) => conds[i] = cond,
        None => conds.push(cond),
    }
}

/// Finds a condition.
pub fn get<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_on_status_change() {
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", false, "Creating", "a", Some(1));
        let t0 = c[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        set_condition(&mut c, "Ready", false, "Waiting", "b", Some(2));
        assert_eq!(c[0].last_transition_time, t0);
        assert_eq!(c[0].reason, "Waiting");
        set_condition(&mut c, "Ready", true, "Ready", "c", Some(2));
        assert_ne!(c[0].last_transition_time, t0);
        assert_eq!(c.len(), 1);
    }
}
