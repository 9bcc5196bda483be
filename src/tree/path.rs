//! Znode paths: validation exactly as ZooKeeper's `PathUtils.validatePath`, parent and name.
//!
//! Owns: nothing but string rules. Pure.

/// Why a path is rejected (the client gets BadArguments).
pub fn validate(path: &str) -> Result<(), &'static str> {
    let chars: Vec<char> = path.chars().collect();
    if chars.is_empty() {
        return Err("path length must be > 0");
    }
    if chars[0] != '/' {
        return Err("path must start with / character");
    }
    if chars.len() == 1 {
        return Ok(());
    }
    if chars[chars.len() - 1] == '/' {
        return Err("path must not end with / character");
    }
    let n = chars.len();
    for i in 1..n {
        let c = chars[i];
        let prev = chars[i - 1];
        let ends_component = i + 1 == n || chars[i + 1] == '/';
        if c == '\0' {
            return Err("null character not allowed");
        } else if c == '/' && prev == '/' {
            return Err("empty node name specified");
        } else if c == '.' && prev == '.' {
            if chars[i - 2] == '/' && ends_component {
                return Err("relative paths not allowed");
            }
        } else if c == '.' {
            if prev == '/' && ends_component {
                return Err("relative paths not allowed");
            }
        } else if is_invalid_char(c) {
            return Err("invalid character");
        }
    }
    Ok(())
}

/// The characters Java's PathUtils refuses; anything outside the BMP is a surrogate pair in
/// Java, and surrogates are refused.
fn is_invalid_char(c: char) -> bool {
    let u = c as u32;
    (0x01..=0x1f).contains(&u)
        || (0x7f..=0x9f).contains(&u)
        || (0xd800..=0xf8ff).contains(&u)
        || (0xfff0..=0xffff).contains(&u)
        || u > 0xffff
}

/// The parent of a validated, non-root path. `/a` → `/`, `/a/b` → `/a`.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of a validated, non-root path.
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Joins a parent and a child name.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Is `path` equal to `prefix` or below it?
pub fn is_under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_zookeeper() {
        for ok in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/..a",
            "/a/...",
            "/zookeeper",
            "/é",
        ] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a\0",
            "/\u{1}",
            "/\u{7f}",
            "/\u{fff5}",
            "/\u{1F600}",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(name("/a/b"), "b");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x"), "/a/x");
        assert!(is_under("/a/b", "/a"));
        assert!(!is_under("/ab", "/a"));
        assert!(is_under("/a", "/"));
    }
}
