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

/// The realm (ZooKeeper's SASL server name) on the client port.
pub const REALM: &str = "zk-sasl-md5";
/// The service and realm between ensemble members (ZooKeeper's quorum SASL).
pub const QUORUM_SERVICE: &str = "zookeeper-quorum";
pub const QUORUM_REALM: &str = "zk-quorum-sasl-md5";

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
    service: &'static str,
    realm: &'static str,
}

impl Server {
    /// The client port's server: service `zookeeper`, realm `zk-sasl-md5`.
    pub fn new(nonce: String) -> Server {
        Server::for_service(nonce, "zookeeper", REALM)
    }

    /// A server for another service and realm (the quorum's).
    pub fn for_service(nonce: String, service: &'static str, realm: &'static str) -> Server {
        Server {
            nonce,
            state: State::Start,
            service,
            realm,
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
                        "realm=\"{}\",nonce=\"{}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess",
                        self.realm, self.nonce
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
        if uri.split('/').next() != Some(self.service) {
            return Err(format!(
                "DIGEST-MD5: digest-uri {uri} is not the {} service",
                self.service
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

/// The client side (a learner authenticating to another member): answers the challenge,
/// then checks the server's rspauth.
pub struct Client {
    user: String,
    password: String,
    digest_uri: String,
    cnonce: String,
    expected_rspauth: Option<String>,
    complete: bool,
}

impl Client {
    pub fn new(user: &str, password: &str, service: &str, host: &str, cnonce: String) -> Client {
        Client {
            user: user.into(),
            password: password.into(),
            digest_uri: format!("{service}/{host}"),
            cnonce,
            expected_rspauth: None,
            complete: false,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The answer to a challenge; None once the server's rspauth checks out.
    pub fn step(&mut self, challenge: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let text =
            std::str::from_utf8(challenge).map_err(|_| "DIGEST-MD5: challenge is not text")?;
        let f = directives(text)?;
        if let Some(expected) = &self.expected_rspauth {
            let got = f
                .get("rspauth")
                .ok_or("DIGEST-MD5: no rspauth from the server")?;
            if !eq_ignore_case(got, expected) {
                return Err("DIGEST-MD5: the server's rspauth is wrong".into());
            }
            self.complete = true;
            return Ok(None);
        }
        let nonce = f.get("nonce").ok_or("DIGEST-MD5: challenge has no nonce")?;
        let realm = f.get("realm").map(String::as_str).unwrap_or("");
        if let Some(q) = f.get("qop") {
            if !q.split(',').any(|x| x.trim() == "auth") {
                return Err(format!("DIGEST-MD5: server offers qop {q}, not auth"));
            }
        }
        let utf8 = f.get("charset").map(String::as_str) == Some("utf-8");
        let nc = "00000001";
        let a1 = a1(
            &self.user,
            realm,
            &self.password,
            nonce,
            &self.cnonce,
            None,
            utf8,
        );
        let uri = &self.digest_uri;
        let response = kd(
            &a1,
            nonce,
            nc,
            &self.cnonce,
            "auth",
            &format!("AUTHENTICATE:{uri}"),
        );
        self.expected_rspauth = Some(kd(&a1, nonce, nc, &self.cnonce, "auth", &format!(":{uri}")));
        let charset = if utf8 { "charset=utf-8," } else { "" };
        Ok(Some(
            format!(
                "{charset}username=\"{}\",realm=\"{realm}\",nonce=\"{nonce}\",nc={nc},cnonce=\"{}\",\
                 digest-uri=\"{uri}\",maxbuf=65536,response={response},qop=auth",
                self.user, self.cnonce
            )
            .into_bytes(),
        ))
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

    #[test]
    fn our_client_and_server_agree_for_the_quorum() {
        let mut s = Server::for_service("n".into(), QUORUM_SERVICE, QUORUM_REALM);
        let mut c = Client::new("learner", "pw", QUORUM_SERVICE, QUORUM_REALM, "c".into());
        let pw = |u: &str| (u == "learner").then(|| "pw".to_string());
        let Step::Challenge(ch) = s.step(b"", pw).unwrap() else {
            panic!()
        };
        let resp = c.step(&ch).unwrap().unwrap();
        let Step::Complete { reply, user } = s.step(&resp, pw).unwrap() else {
            panic!()
        };
        assert_eq!(user, "learner");
        assert_eq!(c.step(&reply).unwrap(), None);
        assert!(c.is_complete());
        // The client port's server refuses the quorum's service.
        let mut other = Server::new("n".into());
        let mut c = Client::new("learner", "pw", QUORUM_SERVICE, QUORUM_REALM, "c".into());
        let Step::Challenge(ch) = other.step(b"", pw).unwrap() else {
            panic!()
        };
        assert!(other.step(&c.step(&ch).unwrap().unwrap(), pw).is_err());
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
