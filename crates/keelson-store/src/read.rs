//! Read helpers shared by the backends: the revision guard of a read and key-range bounds.

use crate::{Error, Result, Revision};

/// Checks that a read at `requested` can be served by a store at `current` whose history is
/// compacted up to `compacted`, and returns the revision to serve (`current` for `None`).
pub(crate) fn served_revision(
    requested: Option<Revision>,
    current: Revision,
    compacted: Revision,
) -> Result<Revision> {
    match requested {
        None => Ok(current),
        Some(r) if r > current => Err(Error::FutureRevision {
            requested: r,
            current,
        }),
        Some(r) if r < compacted => Err(Error::Compacted {
            requested: r,
            compacted,
        }),
        Some(r) => Ok(r),
    }
}

/// The number of keys a page may hold (`None` for no limit).
pub(crate) fn page_limit(limit: Option<usize>) -> Option<usize> {
    limit.filter(|&n| n > 0)
}

/// The first key a list may return: `prefix` itself, or the keys after `start_after` when
/// that sorts at or after the prefix. The flag is `true` when the bound is exclusive.
pub(crate) fn lower_bound<'a>(prefix: &'a str, start_after: Option<&'a str>) -> (&'a str, bool) {
    match start_after {
        Some(after) if after >= prefix => (after, true),
        _ => (prefix, false),
    }
}

/// The smallest byte string greater than every key starting with `prefix` (`None`: no
/// upper bound, for an empty prefix or one made only of `0xff` bytes). Unlike
/// [`crate::prefix_end`] this never has to be valid UTF-8.
pub(crate) fn prefix_end_bytes(prefix: &str) -> Option<Vec<u8>> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_revision_guards_range() {
        fn check(requested: Option<Revision>, want: std::result::Result<Revision, &str>) {
            let got = served_revision(requested, 10, 4).map_err(|e| e.to_string());
            assert_eq!(
                got.as_ref().map_err(String::as_str),
                want.as_ref().map_err(|s| *s),
                "requested {requested:?}"
            );
        }
        check(None, Ok(10));
        check(Some(10), Ok(10));
        check(Some(4), Ok(4));
        check(
            Some(3),
            Err("revision 3 has been compacted (compacted revision 4)"),
        );
        check(
            Some(11),
            Err("revision 11 is in the future (current revision 10)"),
        );
    }

    #[test]
    fn prefix_end_bytes_increments_last_byte() {
        fn check(prefix: &str, want: Option<&[u8]>) {
            assert_eq!(
                prefix_end_bytes(prefix).as_deref(),
                want,
                "prefix {prefix:?}"
            );
        }
        check("/registry/pods/", Some(b"/registry/pods0"));
        check("a", Some(b"b"));
        check("", None);
        // U+00FF is C3 BF: the end is C3 C0, which is not UTF-8 but still the right bound.
        check("\u{ff}", Some(&[0xc3, 0xc0]));
    }

    #[test]
    fn lower_bound_prefers_later_start() {
        assert_eq!(lower_bound("/a/", None), ("/a/", false));
        assert_eq!(lower_bound("/a/", Some("/a/x")), ("/a/x", true));
        assert_eq!(lower_bound("/a/", Some("/")), ("/a/", false));
    }
}
