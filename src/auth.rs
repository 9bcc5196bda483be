//! Authentication schemes and ACL checks: world, auth, digest, ip (with CIDR), x509, sasl
//! and super.
//!
//! Owns: turning `addauth` into identities, checking a permission against an ACL list, and
//! ZooKeeper's `fixupACL` (expanding `auth` ids, rejecting invalid ones). Pure.
//!
//! An x509 identity is the client certificate's subject as Java's
//! `X500Principal.getName()` prints it (RFC 2253: the last RDN first, `,` between RDNs,
//! `+` inside one, the keywords CN C L ST O OU DC UID STREET and any other attribute as
//! `<dotted oid>=#<hex of its DER value>`), as ZooKeeper's X509AuthenticationProvider; it
//! matches an ACL id equal to it. The subject equal to the configured x509 super user also
//! gets `super`.
//!
//! A digest identity is `user:base64(sha1("user:password"))`, as ZooKeeper's
//! DigestAuthenticationProvider. A client whose digest equals the configured super digest
//! also gets the `super` identity, which passes every ACL check.

use crate::jute::records::{Acl, Id};
use crate::proto::ZkError;
use base64::Engine;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// `user:password` → `user:base64(sha1(user:password))`.
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The identities an `addauth` adds, or AuthFailed for an unknown scheme.
pub fn authenticate(
    scheme: &str,
    auth: &[u8],
    client_ip: &str,
    super_digest: Option<&str>,
) -> Result<Vec<Id>, ZkError> {
    match scheme {
        "digest" => {
            let text = std::str::from_utf8(auth).map_err(|_| ZkError::AuthFailed)?;
            let id = digest_id(text);
            let mut ids = Vec::new();
            if super_digest == Some(id.as_str()) {
                ids.push(Id::new("super", ""));
            }
            ids.push(Id::new("digest", &id));
            Ok(ids)
        }
        "ip" => Ok(vec![Id::new("ip", client_ip)]),
        _ => Err(ZkError::AuthFailed),
    }
}

/// The identities a client certificate (DER) gives: `super` (when its subject is
/// `super_user`) and `x509:<subject>`; none when the certificate does not parse.
pub fn x509_ids(cert_der: &[u8], super_user: &str) -> Vec<Id> {
    let Some(subject) = x509_subject(cert_der) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    if !super_user.is_empty() && subject == super_user {
        ids.push(Id::new("super", &subject));
    }
    ids.push(Id::new("x509", &subject));
    ids
}

/// A certificate's subject in RFC 2253 form, as Java's `X500Principal.getName()`.
pub fn x509_subject(cert_der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| rfc2253_attribute(atv.attr_type().to_id_string(), atv.attr_value()))
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

fn rfc2253_attribute(oid: String, value: &x509_parser::der_parser::asn1_rs::Any) -> String {
    use x509_parser::der_parser::asn1_rs::Tag;
    let keyword = match oid.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "2.5.4.9" => Some("STREET"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    let text = match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::TeletexString
        | Tag::NumericString => std::str::from_utf8(value.data).ok(),
        _ => None,
    };
    match (keyword, text) {
        (Some(k), Some(t)) => format!("{k}={}", rfc2253_escape(t)),
        (k, _) => format!(
            "{}=#{}",
            k.map_or(oid.clone(), String::from),
            der_hex(value)
        ),
    }
}

/// RFC 2253 section 2.4 escaping.
fn rfc2253_escape(v: &str) -> String {
    let n = v.chars().count();
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The hex of an attribute value's whole DER encoding (tag, length, content).
fn der_hex(value: &x509_parser::der_parser::asn1_rs::Any) -> String {
    let h = &value.header;
    let mut der = vec![
        ((h.class() as u8) << 6) | ((h.is_constructed() as u8) << 5) | (h.tag().0 as u8 & 0x1f),
    ];
    let len = value.data.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        der.push(0x80 | bytes.len() as u8);
        der.extend(bytes);
    }
    der.extend_from_slice(value.data);
    der.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses `addr` or `addr/bits` into address bytes and a prefix length.
fn parse_ip_expr(expr: &str) -> Option<(Vec<u8>, u32)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (expr, None),
    };
    let bytes = match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let max = bytes.len() as u32 * 8;
    let bits = bits.unwrap_or(max);
    if bits > max {
        return None;
    }
    Some((bytes, bits))
}

fn ip_matches(client: &str, expr: &str) -> bool {
    let (Some((c, _)), Some((a, bits))) = (parse_ip_expr(client), parse_ip_expr(expr)) else {
        return false;
    };
    if c.len() != a.len() {
        return false;
    }
    (0..bits as usize).all(|i| {
        let mask = 0x80u8 >> (i % 8);
        c[i / 8] & mask == a[i / 8] & mask
    })
}

fn id_matches(auth: &Id, acl_id: &Id) -> bool {
    if auth.scheme != acl_id.scheme {
        return false;
    }
    match acl_id.scheme.as_str() {
        "ip" => ip_matches(&auth.id, &acl_id.id),
        "digest" | "x509" | "sasl" => auth.id == acl_id.id,
        _ => false,
    }
}

/// Does an identity set hold `perm` under `acl`? (ZooKeeper's checkACL.)
pub fn check(acl: &[Acl], perm: i32, ids: &[Id]) -> Result<(), ZkError> {
    if acl.is_empty() || ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl.iter().filter(|a| a.perms & perm != 0) {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return Ok(());
        }
        if ids.iter().any(|i| id_matches(i, &a.id)) {
            return Ok(());
        }
    }
    Err(ZkError::NoAuth)
}

fn valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').count() == 2,
        "ip" => parse_ip_expr(&id.id).is_some(),
        "x509" | "sasl" => !id.id.is_empty(),
        _ => false,
    }
}

/// ZooKeeper's fixupACL: drops duplicates, expands `auth`, and refuses empty or invalid lists.
pub fn fixup(acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>, ZkError> {
    let mut uniq: Vec<Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !uniq.contains(a) {
            uniq.push(a.clone());
        }
    }
    if uniq.is_empty() {
        return Err(ZkError::InvalidAcl);
    }
    let mut out = Vec::with_capacity(uniq.len());
    for a in uniq {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            out.push(a);
        } else if a.id.scheme == "auth" {
            // Only providers that report isAuthenticated() count: digest, x509 and sasl, not
            // ip (nor super, which has no provider).
            let authed: Vec<&Id> = ids
                .iter()
                .filter(|i| matches!(i.scheme.as_str(), "digest" | "x509" | "sasl"))
                .collect();
            if authed.is_empty() {
                return Err(ZkError::InvalidAcl);
            }
            for i in authed {
                out.push(Acl {
                    perms: a.perms,
                    id: i.clone(),
                });
            }
        } else if valid_id(&a.id) {
            out.push(a);
        } else {
            return Err(ZkError::InvalidAcl);
        }
    }
    Ok(out)
}

/// whoAmI's (scheme, user) pairs: a digest id shows only its user name.
pub fn client_infos(ids: &[Id]) -> Vec<(String, String)> {
    ids.iter()
        .map(|i| {
            let user = match i.scheme.as_str() {
                "digest" => i.id.split(':').next().unwrap_or("").to_string(),
                _ => i.id.clone(),
            };
            (i.scheme.clone(), user)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::acl_cache::perms;

    #[test]
    fn digest_matches_zookeeper() {
        // The value ZooKeeper's DigestAuthenticationProvider prints for super:test.
        assert_eq!(
            digest_id("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn ip_cidr() {
        assert!(ip_matches("127.0.0.1", "127.0.0.0/8"));
        assert!(ip_matches("10.1.2.3", "10.1.2.3"));
        assert!(!ip_matches("10.1.2.4", "10.1.2.3"));
        assert!(!ip_matches("10.1.2.4", "::1"));
        assert!(ip_matches("::1", "::1/128"));
    }

    #[test]
    fn checks_and_fixup() {
        let me = vec![
            Id::new("ip", "127.0.0.1"),
            Id::new("digest", &digest_id("u:p")),
        ];
        let acl = vec![Acl {
            perms: perms::READ,
            id: Id::new("digest", &digest_id("u:p")),
        }];
        assert!(check(&acl, perms::READ, &me).is_ok());
        assert_eq!(check(&acl, perms::WRITE, &me), Err(ZkError::NoAuth));
        assert!(check(&acl, perms::WRITE, &[Id::new("super", "")]).is_ok());
        let auth = vec![Acl {
            perms: perms::ALL,
            id: Id::new("auth", ""),
        }];
        assert_eq!(fixup(&auth, &me).unwrap().len(), 1);
        assert_eq!(fixup(&auth, &me[..1]), Err(ZkError::InvalidAcl));
        assert_eq!(fixup(&auth, &[]), Err(ZkError::InvalidAcl));
        assert_eq!(fixup(&[], &me), Err(ZkError::InvalidAcl));
        let bad = vec![Acl {
            perms: 1,
            id: Id::new("world", "someone"),
        }];
        assert_eq!(fixup(&bad, &me), Err(ZkError::InvalidAcl));
    }
}
