//! JAAS login configuration files, as Java reads them (`java.security.auth.login.config`):
//! the sections zabd needs (`Server`, `QuorumServer`, `QuorumLearner`) with their login
//! modules and options. Pure: text in, sections out.
//!
//! Layout of the file:
//!
//! ```text
//! Server {
//!     org.apache.zookeeper.server.auth.DigestLoginModule required
//!     user_super="adminsecret"
//!     user_bob="bobsecret";
//! };
//! ```
//!
//! A section is `Name { entry* };`; an entry is `<class> <flag> (key=value)* ;` where the
//! flag is required, requisite, sufficient or optional and a value is a double-quoted
//! string (with `\` escapes) or a bare word. `//` and `/* */` comments are skipped.

use std::collections::BTreeMap;

/// One login module line of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginModule {
    pub class: String,
    pub flag: String,
    pub options: BTreeMap<String, String>,
}

impl LoginModule {
    /// ZooKeeper's DIGEST-MD5 module: its `user_<name>` options are the users.
    pub fn is_digest(&self) -> bool {
        self.class.ends_with(".DigestLoginModule")
    }

    /// A Kerberos module (the JDK's Krb5LoginModule, or IBM's).
    pub fn is_kerberos(&self) -> bool {
        self.class.ends_with(".Krb5LoginModule")
    }

    /// `user_<name>="<password>"` options.
    pub fn users(&self) -> BTreeMap<String, String> {
        self.options
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("user_").map(|u| (u.to_string(), v.clone())))
            .collect()
    }
}

/// A parsed file: section name → its modules.
pub type Jaas = BTreeMap<String, Vec<LoginModule>>;

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Sym(char),
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '/' if it.peek() == Some(&'/') => {
                for c in it.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if it.peek() == Some(&'*') => {
                it.next();
                let mut prev = ' ';
                loop {
                    match it.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("unterminated /* comment".into()),
                    }
                }
            }
            '{' | '}' | ';' | '=' => out.push(Tok::Sym(c)),
            '"' => {
                let mut s = String::new();
                loop {
                    match it.next() {
                        Some('\\') => match it.next() {
                            Some(e) => s.push(e),
                            None => return Err("unterminated string".into()),
                        },
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                out.push(Tok::Quoted(s));
            }
            c => {
                let mut s = String::from(c);
                while let Some(&n) = it.peek() {
                    if n.is_whitespace() || "{};=\"".contains(n) {
                        break;
                    }
                    s.push(n);
                    it.next();
                }
                out.push(Tok::Word(s));
            }
        }
    }
    Ok(out)
}

/// Parses a JAAS file's text.
pub fn parse(text: &str) -> Result<Jaas, String> {
    let toks = tokens(text)?;
    let mut i = 0;
    let mut jaas = Jaas::new();
    let word = |i: usize, what: &str| -> Result<String, String> {
        match toks.get(i) {
            Some(Tok::Word(w)) => Ok(w.clone()),
            other => Err(format!("expected {what}, found {other:?}")),
        }
    };
    let sym = |i: usize, c: char| -> Result<(), String> {
        match toks.get(i) {
            Some(Tok::Sym(s)) if *s == c => Ok(()),
            other => Err(format!("expected '{c}', found {other:?}")),
        }
    };
    while i < toks.len() {
        let name = word(i, "a section name")?;
        sym(i + 1, '{')?;
        i += 2;
        let mut modules = Vec::new();
        while toks.get(i) != Some(&Tok::Sym('}')) {
            let class = word(i, "a login module class")?;
            let flag = word(i + 1, "a control flag")?;
            i += 2;
            let mut options = BTreeMap::new();
            while toks.get(i) != Some(&Tok::Sym(';')) {
                let key = word(i, "an option name")?;
                sym(i + 1, '=')?;
                let value = match toks.get(i + 2) {
                    Some(Tok::Quoted(v)) | Some(Tok::Word(v)) => v.clone(),
                    other => return Err(format!("expected a value for {key}, found {other:?}")),
                };
                options.insert(key, value);
                i += 3;
            }
            i += 1;
            modules.push(LoginModule {
                class,
                flag,
                options,
            });
        }
        i += 1;
        if toks.get(i) == Some(&Tok::Sym(';')) {
            i += 1;
        }
        jaas.insert(name, modules);
    }
    Ok(jaas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_zookeepers_documented_examples() {
        let text = r#"
            // DIGEST-MD5 users
            Server {
                org.apache.zookeeper.server.auth.DigestLoginModule required
                user_super="adminsecret"
                user_bob="bob\"secret";
            };
            /* Kerberos */
            QuorumServer {
                com.sun.security.auth.module.Krb5LoginModule required
                useKeyTab=true
                keyTab="/etc/zk.keytab"
                storeKey=true
                principal="zookeeper/host1@EXAMPLE.COM";
            };
        "#;
        let j = parse(text).unwrap();
        let server = &j["Server"][0];
        assert!(server.is_digest());
        assert_eq!(server.flag, "required");
        assert_eq!(server.users()["bob"], "bob\"secret");
        assert_eq!(server.users()["super"], "adminsecret");
        let q = &j["QuorumServer"][0];
        assert!(q.is_kerberos());
        assert_eq!(q.options["keyTab"], "/etc/zk.keytab");
        assert_eq!(q.options["useKeyTab"], "true");
    }

    #[test]
    fn a_broken_file_says_where() {
        assert!(parse("Server { x required a= ; };").is_err());
        assert!(parse("Server { x required a=\"b ; };").is_err());
    }
}
