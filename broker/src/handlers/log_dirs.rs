//! DescribeLogDirs: partition sizes, and (v4) the log directory's total and usable bytes, which
//! the operator's storage autoscaler reads.

use std::collections::BTreeMap;
use std::path::Path;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{s, topic_name};
use crate::broker::Broker;

/// (total, usable) bytes of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}

pub fn describe(b: &Broker, _version: i16, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in b.replicas.all() {
        if let Some(w) = &wanted {
            match w.get(&p.topic) {
                Some(parts) if parts.contains(&p.index) => {}
                _ => continue,
            }
        }
        by_topic.entry(p.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(p.size_bytes() as i64)
                .with_offset_lag(0),
        );
    }
    let dir = b.replicas.data_dir();
    let dir_name = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(s(dir_name.display().to_string()))
        .with_total_bytes(-1)
        .with_usable_bytes(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(name, mut parts)| {
                    parts.sort_by_key(|p| p.partition_index);
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(parts)
                })
                .collect(),
        );
    match disk_usage(dir) {
        Ok((total, usable)) => {
            result = result
                .with_total_bytes(total as i64)
                .with_usable_bytes(usable as i64);
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "statvfs failed");
            result = result.with_error_code(ResponseError::KafkaStorageError.code());
        }
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}
