//! The storage autoscaler's decision for one broker: pure, so every rule is a table test and
//! the invariants (never shrink, never above max, cooldown, step size) are properties.
//!
//! Rules (docs/storage-autoscaling.md compares them with Amazon MSK's):
//! - the floor is `max(spec.storage.size, requested)`: a raised spec grows the claim
//!   (`SpecIncrease`), a lower spec never shrinks it;
//! - utilization at or above `critical` grows at once (`Emergency`), cooldown or not;
//! - utilization above `target` grows (`Threshold`) unless the broker grew less than
//!   `cooldown` ago;
//! - a fill rate that reaches `critical` within `horizon` grows early (`Prediction`), also
//!   subject to the cooldown;
//! - a step is at least `max(minIncrement, incrementPercent of the current size)` and large
//!   enough that utilization lands at or below `target - margin`; it is clamped to `maxSize`;
//! - nothing grows while a previous resize is still in flight (capacity below the request);
//! - at `maxSize` a growth that is due becomes a refusal (`MaxSizeReached`).

use std::time::Duration;

/// Sizes are rounded up to whole MiB so the patched quantities read well (`1234Mi`).
pub const ROUND: u64 = 1 << 20;

/// The autoscaling policy with every quantity parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub target_percent: f64,
    pub critical_percent: f64,
    pub margin_percent: f64,
    pub min_increment: u64,
    pub increment_percent: f64,
    pub max_size: u64,
    pub cooldown: Duration,
    /// Zero turns the predictive trigger off.
    pub horizon: Duration,
    /// RecommendOnly: the same decisions, reported and not applied (the caller acts on this).
    pub recommend_only: bool,
}

/// What is known about one broker's volume at `now` (seconds since the epoch).
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerInput {
    /// `spec.storage.size` in bytes.
    pub spec_size: u64,
    /// The claim's `spec.resources.requests.storage`.
    pub requested: u64,
    /// The claim's `status.capacity.storage`; `None` before the volume is bound.
    pub capacity: Option<u64>,
    /// Filesystem bytes in use and total, from DescribeLogDirs; `None` when not measured.
    pub used: Option<u64>,
    pub total: Option<u64>,
    /// Bytes per second, from recent measurements; `None` with fewer than two.
    pub fill_rate: Option<f64>,
    /// When this broker's volume last grew (any reason), seconds since the epoch.
    pub last_scale: Option<u64>,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowReason {
    /// `spec.storage.size` was raised above the claim.
    SpecIncrease,
    /// Utilization above the target.
    Threshold,
    /// Utilization at or above the critical level (cooldown skipped).
    Emergency,
    /// The fill rate reaches the critical level within the horizon.
    Prediction,
}

impl GrowReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GrowReason::SpecIncrease => "SpecIncrease",
            GrowReason::Threshold => "Threshold",
            GrowReason::Emergency => "Emergency",
            GrowReason::Prediction => "Prediction",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Hold {
    /// Autoscaling is off or the broker isn't measured; nothing to do.
    NotMeasured,
    /// Utilization is below the target and no fill rate predicts trouble.
    BelowTarget,
    /// A growth is due but the broker grew less than the cooldown ago.
    Cooldown { remaining: Duration },
    /// A resize asked earlier has not reached the volume yet.
    ResizeInProgress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// Growth is due and the volume is at `maxSize`.
    MaxSizeReached,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    NoChange(Hold),
    Grow { new_size: u64, reason: GrowReason },
    Refuse(RefuseReason),
}

fn round_up(b: u64) -> u64 {
    b.div_ceil(ROUND).saturating_mul(ROUND)
}

/// The step for a volume of `size` bytes whose filesystem is `util` percent full:
/// at least `minIncrement` and `incrementPercent`, and enough to land at `target - margin`.
pub fn grown_size(p: &Policy, size: u64, util: f64) -> u64 {
    let pct_step = (size as f64 * p.increment_percent / 100.0).ceil() as u64;
    let step_floor = size.saturating_add(p.min_increment.max(pct_step));
    // Utilization scales with 1/size (filesystem overhead is proportional), so landing at
    // `land` percent needs size * util / land.
    let land = (p.target_percent - p.margin_percent).max(1.0);
    let to_land = (size as f64 * util / land).ceil();
    let to_land = if to_land.is_finite() && to_land < u64::MAX as f64 {
        to_land as u64
    } else {
        u64::MAX
    };
    round_up(step_floor.max(to_land)).min(p.max_size.max(size))
}

/// Percent of the filesystem in use, when measured.
pub fn utilization(used: Option<u64>, total: Option<u64>) -> Option<f64> {
    match (used, total) {
        (Some(u), Some(t)) if t > 0 => Some(u as f64 * 100.0 / t as f64),
        _ => None,
    }
}

/// Decides for one broker. `policy` is `None` when autoscaling is off: only a raised
/// `spec.storage.size` grows the claim then.
pub fn decide(policy: Option<&Policy>, b: &BrokerInput) -> Decision {
    if b.spec_size > b.requested {
        return Decision::Grow {
            new_size: b.spec_size,
            reason: GrowReason::SpecIncrease,
        };
    }
    let Some(p) = policy else {
        return Decision::NoChange(Hold::NotMeasured);
    };
    let Some(util) = utilization(b.used, b.total) else {
        return Decision::NoChange(Hold::NotMeasured);
    };
    if b.capacity.is_none_or(|c| c < b.requested) {
        return Decision::NoChange(Hold::ResizeInProgress);
    }
    let emergency = util >= p.critical_percent;
    let threshold = util > p.target_percent;
    let predicted = !p.horizon.is_zero()
        && match (b.fill_rate, b.used, b.total) {
            (Some(rate), Some(used), Some(total)) if rate > 0.0 => {
                let critical_bytes = total as f64 * p.critical_percent / 100.0;
                let secs_left = (critical_bytes - used as f64).max(0.0) / rate;
                secs_left <= p.horizon.as_secs_f64()
            }
            _ => false,
        };
    let reason = if emergency {
        GrowReason::Emergency
    } else if threshold {
        GrowReason::Threshold
    } else if predicted {
        GrowReason::Prediction
    } else {
        return Decision::NoChange(Hold::BelowTarget);
    };
    if reason != GrowReason::Emergency {
        if let Some(last) = b.last_scale {
            let until = last.saturating_add(p.cooldown.as_secs());
            if b.now < until {
                return Decision::NoChange(Hold::Cooldown {
                    remaining: Duration::from_secs(until - b.now),
                });
            }
        }
    }
    if b.requested >= p.max_size {
        return Decision::Refuse(RefuseReason::MaxSizeReached);
    }
    // Prediction: land under the target as it will be at the horizon's end.
    let util_for_step = if reason == GrowReason::Prediction {
        match (b.fill_rate, b.used, b.total) {
            (Some(rate), Some(used), Some(total)) if total > 0 => {
                let later = used as f64 + rate * p.horizon.as_secs_f64();
                (later * 100.0 / total as f64).min(100.0)
            }
            _ => util,
        }
    } else {
        util
    };
    Decision::Grow {
        new_size: grown_size(p, b.requested, util_for_step),
        reason,
    }
}

/// Bytes per second over the samples `(seconds, used bytes)`, oldest first: a least-squares
/// slope, so one noisy sample does not make a trend. `None` with fewer than two samples or no
/// time between them.
pub fn fill_rate(samples: &[(f64, u64)]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mt = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mu = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, u) in samples {
        num += (t - mt) * (*u as f64 - mu);
        den += (t - mt) * (t - mt);
    }
    (den > 0.0).then(|| num / den)
}

/// The default prediction horizon: three times the longest resize observed, 15 minutes until
/// one has been observed.
pub fn default_horizon(longest_resize: Option<Duration>) -> Duration {
    longest_resize
        .map(|d| (d * 3).max(Duration::from_secs(60)))
        .unwrap_or(Duration::from_secs(15 * 60))
}

/// `bytes` as a Kubernetes quantity: whole `Gi` or `Mi` when exact, plain bytes otherwise.
pub fn to_quantity(bytes: u64) -> String {
    if bytes > 0 && bytes % (1 << 30) == 0 {
        format!("{}Gi", bytes >> 30)
    } else if bytes > 0 && bytes % (1 << 20) == 0 {
        format!("{}Mi", bytes >> 20)
    } else {
        bytes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GI: u64 = 1 << 30;
    const MI: u64 = 1 << 20;
    const H: u64 = 3600;

    /// MSK's defaults with target 60 %.
    fn msk() -> Policy {
        Policy {
            target_percent: 60.0,
            critical_percent: 90.0,
            margin_percent: 5.0,
            min_increment: 10 * GI,
            increment_percent: 10.0,
            max_size: 1 << 40,
            cooldown: Duration::from_secs(6 * H),
            horizon: Duration::from_secs(15 * 60),
            recommend_only: false,
        }
    }

    fn broker(size: u64, used_pct: f64) -> BrokerInput {
        BrokerInput {
            spec_size: size,
            requested: size,
            capacity: Some(size),
            used: Some((size as f64 * used_pct / 100.0) as u64),
            total: Some(size),
            fill_rate: None,
            last_scale: None,
            now: 100 * H,
        }
    }

    #[test]
    fn table() {
        let p = msk();
        struct Case {
            name: &'static str,
            input: BrokerInput,
            want: Decision,
        }
        let cases = vec![
            Case {
                name: "below target: nothing",
                input: broker(100 * GI, 50.0),
                want: Decision::NoChange(Hold::BelowTarget),
            },
            Case {
                name: "above target: 10Gi or 10 %, and enough to land at 55 %",
                // 61 % of 100Gi → 61/55*100Gi = 110.9Gi > 110Gi.
                input: broker(100 * GI, 61.0),
                want: Decision::Grow {
                    new_size: round_up((100.0 * GI as f64 * 61.0 / 55.0).ceil() as u64),
                    reason: GrowReason::Threshold,
                },
            },
            Case {
                name: "large volume: 10 % beats 10Gi",
                input: BrokerInput {
                    // 60.3 %: landing at 55 % needs 987.3Gi, below 900Gi + 10 %.
                    used: Some(543 * GI),
                    ..broker(900 * GI, 0.0)
                },
                want: Decision::Grow {
                    new_size: 990 * GI,
                    reason: GrowReason::Threshold,
                },
            },
            Case {
                name: "small volume: minIncrement beats 10 %",
                input: BrokerInput {
                    used: Some(31 * GI),
                    ..broker(50 * GI, 0.0)
                },
                // 62 % → to land at 55 %: 56.4Gi < 60Gi (50Gi + 10Gi).
                want: Decision::Grow {
                    new_size: 60 * GI,
                    reason: GrowReason::Threshold,
                },
            },
            Case {
                name: "cooldown holds a threshold growth",
                input: BrokerInput {
                    last_scale: Some(100 * H - H),
                    ..broker(100 * GI, 65.0)
                },
                want: Decision::NoChange(Hold::Cooldown {
                    remaining: Duration::from_secs(5 * H),
                }),
            },
            Case {
                name: "cooldown over",
                input: BrokerInput {
                    last_scale: Some(100 * H - 6 * H),
                    ..broker(100 * GI, 65.0)
                },
                want: Decision::Grow {
                    new_size: round_up((100.0 * GI as f64 * 65.0 / 55.0).ceil() as u64),
                    reason: GrowReason::Threshold,
                },
            },
            Case {
                name: "emergency ignores the cooldown",
                input: BrokerInput {
                    last_scale: Some(100 * H - 60),
                    ..broker(100 * GI, 95.0)
                },
                want: Decision::Grow {
                    new_size: round_up((100.0 * GI as f64 * 95.0 / 55.0).ceil() as u64),
                    reason: GrowReason::Emergency,
                },
            },
            Case {
                name: "prediction: reaches 90 % within 15 min",
                input: BrokerInput {
                    // 50 % of 100Gi, filling 50 MiB/s: 40Gi to go takes ~13.6 min.
                    fill_rate: Some(50.0 * MI as f64),
                    ..broker(100 * GI, 50.0)
                },
                want: Decision::Grow {
                    // At the horizon's end: 50Gi + 45000MiB ≈ 93.9 % → land at 55 %.
                    new_size: grown_size(
                        &p,
                        100 * GI,
                        (50.0 * GI as f64 + 50.0 * MI as f64 * 900.0) * 100.0 / (100 * GI) as f64,
                    ),
                    reason: GrowReason::Prediction,
                },
            },
            Case {
                name: "prediction: slow fill is no trigger",
                input: BrokerInput {
                    fill_rate: Some(MI as f64),
                    ..broker(100 * GI, 50.0)
                },
                want: Decision::NoChange(Hold::BelowTarget),
            },
            Case {
                name: "prediction respects the cooldown",
                input: BrokerInput {
                    fill_rate: Some(50.0 * MI as f64),
                    last_scale: Some(100 * H - 60),
                    ..broker(100 * GI, 50.0)
                },
                want: Decision::NoChange(Hold::Cooldown {
                    remaining: Duration::from_secs(6 * H - 60),
                }),
            },
            Case {
                name: "clamped to maxSize",
                input: BrokerInput {
                    used: Some(700 * GI),
                    ..broker(1000 * GI, 0.0)
                },
                want: Decision::Grow {
                    new_size: 1 << 40,
                    reason: GrowReason::Threshold,
                },
            },
            Case {
                name: "at maxSize: refusal",
                input: broker(1 << 40, 70.0),
                want: Decision::Refuse(RefuseReason::MaxSizeReached),
            },
            Case {
                name: "at maxSize but below target: nothing to refuse",
                input: broker(1 << 40, 30.0),
                want: Decision::NoChange(Hold::BelowTarget),
            },
            Case {
                name: "resize in flight: wait",
                input: BrokerInput {
                    capacity: Some(90 * GI),
                    ..broker(100 * GI, 95.0)
                },
                want: Decision::NoChange(Hold::ResizeInProgress),
            },
            Case {
                name: "spec raised: grow to spec",
                input: BrokerInput {
                    spec_size: 200 * GI,
                    ..broker(100 * GI, 10.0)
                },
                want: Decision::Grow {
                    new_size: 200 * GI,
                    reason: GrowReason::SpecIncrease,
                },
            },
            Case {
                name: "spec below the grown size: never shrink",
                input: BrokerInput {
                    spec_size: 100 * GI,
                    requested: 150 * GI,
                    capacity: Some(150 * GI),
                    total: Some(150 * GI),
                    used: Some(10 * GI),
                    ..broker(100 * GI, 0.0)
                },
                want: Decision::NoChange(Hold::BelowTarget),
            },
            Case {
                name: "not measured",
                input: BrokerInput {
                    used: None,
                    ..broker(100 * GI, 0.0)
                },
                want: Decision::NoChange(Hold::NotMeasured),
            },
            Case {
                name: "Mi-sized volumes (test beds)",
                input: BrokerInput {
                    used: Some(40 * MI),
                    ..broker(64 * MI, 0.0)
                },
                want: Decision::Grow {
                    // 62.5 % → land at 55 %: 72.7Mi → 73Mi; minIncrement 10Gi dominates here.
                    new_size: 64 * MI + 10 * GI,
                    reason: GrowReason::Threshold,
                },
            },
        ];
        for c in cases {
            assert_eq!(decide(Some(&p), &c.input), c.want, "{}", c.name);
        }
    }

    #[test]
    fn autoscaling_off_only_follows_the_spec() {
        assert_eq!(
            decide(None, &broker(100 * GI, 99.0)),
            Decision::NoChange(Hold::NotMeasured)
        );
        assert_eq!(
            decide(
                None,
                &BrokerInput {
                    spec_size: 120 * GI,
                    ..broker(100 * GI, 99.0)
                }
            ),
            Decision::Grow {
                new_size: 120 * GI,
                reason: GrowReason::SpecIncrease
            }
        );
    }

    #[test]
    fn fill_rate_is_the_slope() {
        assert_eq!(fill_rate(&[(0.0, 10)]), None);
        assert_eq!(fill_rate(&[(5.0, 10), (5.0, 20)]), None);
        let r = fill_rate(&[(0.0, 0), (10.0, 1000), (20.0, 2000)]).expect("rate");
        assert!((r - 100.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn quantities() {
        assert_eq!(to_quantity(10 * GI), "10Gi");
        assert_eq!(to_quantity(73 * MI), "73Mi");
        assert_eq!(to_quantity(1000), "1000");
        assert_eq!(
            default_horizon(Some(Duration::from_secs(100))),
            Duration::from_secs(300)
        );
        assert_eq!(default_horizon(None), Duration::from_secs(900));
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (
            10u32..=80,
            1u32..=19,
            0u32..=9,
            1u64..=(20 * GI),
            1u32..=100,
            (1u64..=4096).prop_map(|g| g * GI),
            0u64..=(12 * H),
            0u64..=H,
        )
            .prop_map(|(t, c, m, min, pct, max, cd, hz)| Policy {
                target_percent: t as f64,
                critical_percent: (t + c).min(99) as f64,
                margin_percent: m.min(t - 1) as f64,
                min_increment: min,
                increment_percent: pct as f64,
                max_size: max,
                cooldown: Duration::from_secs(cd),
                horizon: Duration::from_secs(hz),
                recommend_only: false,
            })
    }

    fn arb_input() -> impl Strategy<Value = BrokerInput> {
        (
            (1u64..=4096).prop_map(|g| g * GI),
            0u64..=(8 * GI),
            0.0f64..=1.0,
            proptest::option::of(0.0f64..1e9),
            proptest::option::of(0u64..=(24 * H)),
            any::<bool>(),
            (1u64..=4096).prop_map(|g| g * GI),
        )
            .prop_map(
                |(requested, extra_total, used_frac, rate, ago, bound, spec)| {
                    let total = requested + extra_total;
                    let now = 1_000 * H;
                    BrokerInput {
                        spec_size: spec.min(requested),
                        requested,
                        capacity: Some(if bound { requested } else { requested / 2 }),
                        used: Some((total as f64 * used_frac) as u64),
                        total: Some(total),
                        fill_rate: rate,
                        last_scale: ago.map(|a| now - a),
                        now,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn invariants(p in arb_policy(), b in arb_input()) {
            let d = decide(Some(&p), &b);
            if let Decision::Grow { new_size, reason } = d {
                // Never shrinks; never exceeds the max (spec growth aside, which CEL bounds).
                prop_assert!(new_size > b.requested);
                if reason != GrowReason::SpecIncrease {
                    prop_assert!(new_size <= p.max_size);
                    // The step is at least minIncrement unless the max clamps it.
                    prop_assert!(new_size - b.requested >= p.min_increment || new_size == p.max_size);
                }
                // Cooldown respected except in emergency.
                if let Some(last) = b.last_scale {
                    if b.now < last + p.cooldown.as_secs() {
                        prop_assert!(matches!(reason, GrowReason::Emergency | GrowReason::SpecIncrease));
                    }
                }
                // Never stacked on an unfinished resize.
                prop_assert!(b.capacity.is_some_and(|c| c >= b.requested) || reason == GrowReason::SpecIncrease);
            }
        }

        #[test]
        fn step_lands_under_target(p in arb_policy(), size in (1u64..=1024).prop_map(|g| g * GI), util in 0.0f64..=100.0) {
            let n = grown_size(&p, size, util);
            prop_assert!(n >= size);
            if n < p.max_size {
                let after = util * size as f64 / n as f64;
                prop_assert!(after <= p.target_percent - p.margin_percent + 1e-6, "after {after}");
            }
        }
    }
}
