//! The host's resolver configuration (`resolv.conf`), parsed as the kubelet parses it, and the
//! choice of file on hosts where systemd-resolved's stub (127.0.0.53) is all /etc names.

use std::path::{Path, PathBuf};

/// The resolver file of most hosts.
pub const ETC_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The file listing systemd-resolved's real upstream servers.
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// Errors reading a resolver file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a resolv.conf says: name servers, search domains and options, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Parses a resolv.conf as the kubelet does: `nameserver` lines append, the last `search` line
/// wins (trailing dots dropped, `.` ignored), `options` accumulate with later ones replacing
/// earlier ones of the same name; comments and other lines are ignored.
pub fn parse(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => {
                if let Some(ns) = fields.next() {
                    conf.nameservers.push(ns.to_string());
                }
            }
            Some("search") => {
                conf.searches = fields
                    .filter(|s| *s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect();
            }
            Some("options") => {
                for o in fields {
                    merge_option(&mut conf.options, o);
                }
            }
            _ => {}
        }
    }
    conf
}

/// The name of an option (`ndots` of `ndots:5`).
pub fn option_name(o: &str) -> &str {
    o.split(':').next().unwrap_or(o)
}

/// Adds `o` to `options`, replacing an option of the same name.
pub fn merge_option(options: &mut Vec<String>, o: &str) {
    match options
        .iter_mut()
        .find(|x| option_name(x) == option_name(o))
    {
        Some(x) => *x = o.to_string(),
        None => options.push(o.to_string()),
    }
}

/// Whether a resolv.conf names only loopback servers (a local stub such as systemd-resolved's
/// 127.0.0.53), which pods cannot reach.
pub fn only_loopback(conf: &ResolvConf) -> bool {
    !conf.nameservers.is_empty()
        && conf.nameservers.iter().all(|ns| {
            ns.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        })
}

/// Reads the host's resolver configuration: /etc/resolv.conf, or systemd-resolved's upstream
/// file when /etc names only a loopback stub and that file exists (as kubeadm points the
/// kubelet there). Returns the file used and what it says.
pub fn read_host() -> Result<(PathBuf, ResolvConf)> {
    read_host_from(Path::new(ETC_RESOLV_CONF), Path::new(SYSTEMD_RESOLV_CONF))
}

/// [`read_host`] with the two paths given.
pub fn read_host_from(etc: &Path, systemd: &Path) -> Result<(PathBuf, ResolvConf)> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| Error::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let conf = parse(&read(etc)?);
    if only_loopback(&conf) && systemd.exists() {
        return Ok((systemd.to_path_buf(), parse(&read(systemd)?)));
    }
    Ok((etc.to_path_buf(), conf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(ns: &[&str], search: &[&str], options: &[&str]) -> ResolvConf {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        ResolvConf {
            nameservers: v(ns),
            searches: v(search),
            options: v(options),
        }
    }

    #[test]
    fn parses_like_the_kubelet() {
        let cases: &[(&str, ResolvConf)] = &[
            ("", conf(&[], &[], &[])),
            (
                "nameserver 1.2.3.4\nnameserver 5.6.7.8 # x\n",
                conf(&["1.2.3.4", "5.6.7.8"], &[], &[]),
            ),
            (
                "search a.com. b.org\nsearch c.net d. .\n",
                conf(&[], &["c.net", "d"], &[]),
            ),
            (
                "options ndots:2 rotate\noptions ndots:3 edns0\n",
                conf(&[], &[], &["ndots:3", "rotate", "edns0"]),
            ),
            (
                "# comment\n; other\ndomain x.y\nnameserver 10.0.0.1\n",
                conf(&["10.0.0.1"], &[], &[]),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn loopback_only_detection() {
        assert!(only_loopback(&conf(&["127.0.0.53"], &[], &[])));
        assert!(only_loopback(&conf(&["127.0.0.1", "::1"], &[], &[])));
        assert!(!only_loopback(&conf(&["127.0.0.53", "8.8.8.8"], &[], &[])));
        assert!(!only_loopback(&conf(&[], &[], &[])));
    }

    #[test]
    fn systemd_file_replaces_a_stub_only() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        let sd = dir.path().join("sd");
        std::fs::write(&etc, "nameserver 127.0.0.53\nsearch lan\n").unwrap();
        let (p, c) = read_host_from(&etc, &sd).unwrap();
        assert_eq!((p, c.nameservers), (etc.clone(), vec!["127.0.0.53".into()]));
        std::fs::write(&sd, "nameserver 192.168.1.1\nsearch lan\n").unwrap();
        let (p, c) = read_host_from(&etc, &sd).unwrap();
        assert_eq!((p, c.nameservers), (sd.clone(), vec!["192.168.1.1".into()]));
        std::fs::write(&etc, "nameserver 10.0.0.2\n").unwrap();
        let (p, _) = read_host_from(&etc, &sd).unwrap();
        assert_eq!(p, etc);
        let err = read_host_from(&dir.path().join("none"), &sd).unwrap_err();
        assert!(err.to_string().starts_with("reading "), "{err}");
    }
}
