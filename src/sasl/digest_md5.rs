//! The DIGEST-MD5 SASL mechanism (RFC 2831), server side, as ZooKeeper's Java server runs
//! it: realm `zk-sasl-md5`, qop `auth` only (no integrity or privacy layer), md5-sess.
//! Pure: the nonce comes in from the caller, passwords through a lookup.
//!
//! Exchange (each line is one GetSASLRequest / SetSASLResponse token):
//!
//! ```text
//! client: (empty)
//! server: realm="zk-sasl-md5",nonce="N",qop="auth",charset=utf-8,algorithm=md5-sess
//! client: username="bob",realm="zk-sasl-md5",nonce="N",cnonce="C",nc=00000001,qop=auth,
//!         digest-uri="zookeeper/zk-sasl-md5",maxbuf=65536,response=<32 hex>,charset=utf-8
//! server: rspauth=<32 hex>          (complete: the client is bob)
//! ```
//!
//! response = HEX(MD5(HEX(MD5(A1)) ":" N ":" nc ":" C ":" qop ":" HEX(MD5(A2)))) with
//! A1 = MD5(user ":" realm ":" password) ":" N ":" C [":" authzid] and
//! A2 = "AUTHENTICATE:" digest-uri; rspauth is the same with A2 = ":" digest-uri.

use md5::{Digest, Md5};
use std::collections::BTreeMap;

/// The realm (ZooKeeper's SASL server name).
pub const REALM: &str = "zk-sasl-md5";

/// What one step gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge; more to come.
    Challenge(Vec<u8>),
    /// Send this last token; the client is `user` (its authentication id).
    Complete { reply: Vec<u8>, user: String },
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Start,
    Challenged,
    Done,
}

pub struct Server {
    nonce: String,
    state: State,
}

impl Server {
    pub fn new(nonce: String) -> Server {
        Server {
            nonce,
            state: State::Start,
        }
    }

    /// Evaluates the client's token; `password(user)` is the user's password, if any.
    pub fn step(
        &mut self,
        token: &[u8],
        password: impl Fn(&str) -> Option<String>,
    ) -> Result<Step, String> {
        match self.state {
            State::Start => {
                self.state = State::Challenged;
                Ok(Step::Challenge(
                    format!(
                        "realm=\"{REALM}\",nonce=\"{}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess",
                        self.nonce
                    )
                    .into_bytes(),
                ))
            }
            State::Challenged => {
                self.state = State::Done;
                self.verify(token, password)
            }
            State::Done => Err("DIGEST-MD5: the exchange is already complete".into()),
        }
    }

    fn verify(
        &self,
        token: &[u8],
        password: impl Fn(&str) -> Option<String>,
    ) -> Result<Step, String> {
        let text = std::str::from_utf8(token).map_err(|_| "DIGEST-MD5: response is not text")?;
        let f = directives(text)?;
        let get = |k: &str| f.get(k).map(String::as_str);
        let need = |k: &str| get(k).ok_or_else(|| format!("DIGEST-MD5: response has no {k}"));
        let user = need("username")?;
        let realm = get("realm").unwrap_or("");
        let cnonce = need("cnonce")?;
        let nc = need("nc")?;
        let uri = need("digest-uri")?;
        let response = need("response")?;
        let qop = get("qop").unwrap_or("auth");
        if need("nonce")? != self.nonce {
            return Err("DIGEST-MD5: nonce mismatch".into());
        }
        if nc != "00000001" {
            return Err(format!("DIGEST-MD5: unexpected nonce count {nc}"));
        }
        if qop != "auth" {
            return Err(format!("DIGEST-MD5: qop {qop} is not offered"));
        }
        if !uri.starts_with("zookeeper/") {
            return Err(format!(
                "DIGEST-MD5: digest-uri {uri} is not the zookeeper service"
            ));
        }
        let utf8 = get("charset") == Some("utf-8");
        let pw = password(user).ok_or_else(|| format!("DIGEST-MD5: unknown user {user}"))?;
        let authzid = get("authzid");
        let a1 = a1(user, realm, &pw, &self.nonce, cnonce, authzid, utf8);
        let expected = kd(
            &a1,
            &self.nonce,
            nc,
            cnonce,
            qop,
            &format!("AUTHENTICATE:{uri}"),
        );
        if !eq_ignore_case(&expected, response) {
            return Err(format!("DIGEST-MD5: wrong password for {user}"));
        }
        let rspauth = kd(&a1, &self.nonce, nc, cnonce, qop, &format!(":{uri}"));
        Ok(Step::Complete {
            reply: format!("rspauth={rspauth}").into_bytes(),
            user: user.to_string(),
        })
    }
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x.eq_ignore_ascii_case(&y))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Text as the mechanism hashes it: UTF-8 when the client said charset=utf-8, else
/// ISO-8859-1 where every character fits.
fn encoded(s: &str, utf8: bool) -> Vec<u8> {
    if !utf8 && s.chars().all(|c| (c as u32) < 256) {
        s.chars().map(|c| c as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

fn a1(
    user: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    cnonce: &str,
    authzid: Option<&str>,
    utf8: bool,
) -> Vec<u8> {
    let mut inner = Md5::new();
    inner.update(encoded(user, utf8));
    inner.update(b":");
    inner.update(encoded(realm, utf8));
    inner.update(b":");
    inner.update(encoded(password, utf8));
    let mut a1 = inner.finalize().to_vec();
    a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
    if let Some(z) = authzid {
        a1.extend_from_slice(b":");
        a1.extend_from_slice(z.as_bytes());
    }
    a1
}

fn kd(a1: &[u8], nonce: &str, nc: &str, cnonce: &str, qop: &str, a2: &str) -> String {
    let ha1 = hex(&Md5::digest(a1));
    let ha2 = hex(&Md5::digest(a2.as_bytes()));
    hex(&Md5::digest(
        format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes(),
    ))
}

/// `key=value` or `key="quoted value"` directives, comma-separated.
fn directives(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut it = text.chars().peekable();
    loop {
        while matches!(it.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        for c in it.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        let mut value = String::new();
        if it.peek() == Some(&'"') {
            it.next();
            loop {
                match it.next() {
                    Some('\\') => value.extend(it.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err("DIGEST-MD5: unterminated quoted value".into()),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                it.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side, as RFC 2831 and Java's DigestMD5Client compute it.
    fn client_response(challenge: &str, user: &str, pw: &str, cnonce: &str) -> String {
        let f = directives(challenge).unwrap();
        let nonce = &f["nonce"];
        let uri = "zookeeper/zk-sasl-md5";
        let a1 = a1(user, REALM, pw, nonce, cnonce, None, true);
        let r = kd(
            &a1,
            nonce,
            "00000001",
            cnonce,
            "auth",
            &format!("AUTHENTICATE:{uri}"),
        );
        format!(
            "charset=utf-8,username=\"{user}\",realm=\"{REALM}\",nonce=\"{nonce}\",nc=00000001,\
             cnonce=\"{cnonce}\",digest-uri=\"{uri}\",maxbuf=65536,response={r},qop=auth"
        )
    }

    fn users(u: &str) -> Option<String> {
        (u == "bob").then(|| "bobsecret".to_string())
    }

    #[test]
    fn a_right_password_completes_with_rspauth() {
        let mut s = Server::new("OA6MG9tEQGm2hh".into());
        let Step::Challenge(c) = s.step(b"", users).unwrap() else {
            panic!("a challenge first")
        };
        let c = String::from_utf8(c).unwrap();
        assert!(c.contains("realm=\"zk-sasl-md5\"") && c.contains("qop=\"auth\""));
        let resp = client_response(&c, "bob", "bobsecret", "OA6MHXh6VqTrRk");
        match s.step(resp.as_bytes(), users).unwrap() {
            Step::Complete { reply, user } => {
                assert_eq!(user, "bob");
                assert!(String::from_utf8(reply).unwrap().starts_with("rspauth="));
            }
            other => panic!("{other:?}"),
        }
        assert!(s.step(b"", users).is_err());
    }

    #[test]
    fn a_wrong_password_or_user_fails() {
        for (user, pw) in [("bob", "nope"), ("eve", "bobsecret")] {
            let mut s = Server::new("n1".into());
            let Step::Challenge(c) = s.step(b"", users).unwrap() else {
                panic!()
            };
            let resp = client_response(std::str::from_utf8(&c).unwrap(), user, pw, "c");
            assert!(s.step(resp.as_bytes(), users).is_err(), "{user}/{pw}");
        }
    }

    /// RFC 2831's own example (section 4), which uses qop=auth and a1 without authzid.
    #[test]
    fn rfc_2831_example() {
        let a1 = a1(
            "chris",
            "elwood.innosoft.com",
            "secret",
            "OA6MG9tEQGm2hh",
            "OA6MHXh6VqTrRk",
            None,
            false,
        );
        let r = kd(
            &a1,
            "OA6MG9tEQGm2hh",
            "00000001",
            "OA6MHXh6VqTrRk",
            "auth",
            "AUTHENTICATE:imap/elwood.innosoft.com",
        );
        assert_eq!(r, "d388dad90d4bbd760a152321f2143af7");
        let rspauth = kd(
            &a1,
            "OA6MG9tEQGm2hh",
            "00000001",
            "OA6MHXh6VqTrRk",
            "auth",
            ":imap/elwood.innosoft.com",
        );
        assert_eq!(rspauth, "ea40f60335c427b5527b84dbabcdfffd");
    }
}
