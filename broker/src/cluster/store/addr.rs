//! The `--coordinator` value: `host:port[,host:port...][/chroot]`, checked up front so that a
//! typo is a clear start-up error rather than a connection that never succeeds.

/// A parsed `--coordinator` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorAddr {
    /// `host:port,host:port` as the ZooKeeper client expects it (no chroot).
    pub hosts: String,
    /// The chroot (`/rivulet/prod`), if any; created at start-up when missing.
    pub chroot: Option<String>,
}

impl std::fmt::Display for CoordinatorAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.hosts, self.chroot.as_deref().unwrap_or(""))
    }
}

const EXPECTED: &str = "expected host:port[,host:port...][/chroot]";

/// Parses a `--coordinator` value; the error names the flag, the value and the reason.
pub fn parse(value: &str) -> Result<CoordinatorAddr, String> {
    parse_reason(value).map_err(|why| format!("invalid --coordinator {value:?}: {why}"))
}

/// The flag's clap value parser: a malformed value is refused like any other bad setting.
pub fn validate(value: &str) -> Result<String, String> {
    parse_reason(value).map(|_| value.to_string())
}

fn parse_reason(value: &str) -> Result<CoordinatorAddr, String> {
    let bad = |why: String| format!("{why} ({EXPECTED})");
    let value_trimmed = value.trim();
    if value_trimmed.is_empty() {
        return Err(bad("it is empty".into()));
    }
    let (hosts, chroot) = match value_trimmed.find('/') {
        Some(i) => (&value_trimmed[..i], Some(&value_trimmed[i..])),
        None => (value_trimmed, None),
    };
    let mut out = Vec::new();
    for h in hosts.split(',') {
        let h = h.trim();
        if h.is_empty() {
            return Err(bad("an address in the list is empty".into()));
        }
        let (host, port) = h
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("{h:?} has no port")))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("{h:?}: port {port:?} is not a number 1-65535")))?;
        let host_ok = !host.is_empty()
            && !host.chars().any(char::is_whitespace)
            && (host.starts_with('[') == host.ends_with(']'));
        if !host_ok {
            return Err(bad(format!("{h:?} has no valid host")));
        }
        out.push(format!("{host}:{port}"));
    }
    let chroot = match chroot {
        None | Some("/") => None,
        Some(c) => {
            if c.ends_with('/') || c.contains("//") {
                return Err(bad(format!(
                    "chroot {c:?} must not end with '/' or contain empty segments"
                )));
            }
            if c.chars().any(|ch| ch.is_whitespace() || ch == ',') {
                return Err(bad(format!("chroot {c:?} contains a space or ','")));
            }
            if c.split('/').any(|seg| seg == "." || seg == "..") {
                return Err(bad(format!("chroot {c:?} contains '.' or '..'")));
            }
            Some(c.to_string())
        }
    };
    Ok(CoordinatorAddr {
        hosts: out.join(","),
        chroot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lists_and_chroots() {
        assert_eq!(
            parse("127.0.0.1:2181").unwrap(),
            CoordinatorAddr {
                hosts: "127.0.0.1:2181".into(),
                chroot: None
            }
        );
        let a = parse("zk-0:2181, zk-1:2181,[::1]:2182/rivulet/prod").unwrap();
        assert_eq!(a.hosts, "zk-0:2181,zk-1:2181,[::1]:2182");
        assert_eq!(a.chroot.as_deref(), Some("/rivulet/prod"));
        assert_eq!(a.to_string(), "zk-0:2181,zk-1:2181,[::1]:2182/rivulet/prod");
        assert_eq!(parse("h:1/").unwrap().chroot, None);
    }

    #[test]
    fn rejects_bad_values_with_the_reason() {
        for (v, why) in [
            ("", "empty"),
            ("localhost", "no port"),
            ("h:0", "not a number"),
            ("h:99999", "not a number"),
            ("h:2181,,h2:2181", "empty"),
            (":2181", "no valid host"),
            ("h:2181/a/", "must not end"),
            ("h:2181/a//b", "empty segments"),
            ("h:2181/a/../b", "'..'"),
        ] {
            let err = parse(v).unwrap_err();
            assert!(err.contains(why), "{v:?}: {err}");
            assert!(err.starts_with("invalid --coordinator"), "{err}");
            assert!(err.contains("host:port[,host:port...][/chroot]"), "{err}");
            assert!(validate(v).unwrap_err().contains(why));
        }
        assert_eq!(validate("h:1/r").unwrap(), "h:1/r");
    }
}
