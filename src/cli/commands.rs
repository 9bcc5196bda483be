//! The commands of `zabd cli`, as zkCli (ZooKeeper 3.8) names, takes and prints them.

use crate::admin::words::java_date;
use std::fmt::Write;
use zookeeper_client::{
    Acl, Acls, AddWatchMode, AuthId, Client, CreateMode, Error, Permission, Stat,
};

pub struct Shell {
    client: Client,
    pub servers: String,
    pub quit: bool,
    pub history: Vec<String>,
    watches: Vec<tokio::task::JoinHandle<()>>,
}

const HELP: &str = "ZooKeeper -server host:port -client-configuration properties-file cmd args
\taddWatch [-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE
\taddauth scheme auth
\tclose
\tcreate [-s] [-e] [-c] [-t ttl] path [data] [acl]
\tdelete [-v version] path
\tdeleteall path
\tget [-s] [-w] path
\tgetAcl [-s] path
\tgetAllChildrenNumber path
\tgetEphemerals path
\thistory
\tls [-s] [-w] [-R] path
\tquit
\tset [-s] [-v version] path data
\tsetAcl [-s] [-v version] [-R] path acl
\tstat [-w] path
\tsync path
\twhoami
";

/// A command line split into words, quotes ("..." or '...') keeping spaces.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut started = false;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            (None, c) => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(cur);
    }
    out
}

/// Flags (`-s`) and flag values (`-v 3`) apart from the positional arguments.
struct Args {
    flags: Vec<char>,
    values: Vec<(char, String)>,
    pos: Vec<String>,
}

fn parse(w: &[String], with_value: &[char]) -> Result<Args, String> {
    let mut a = Args {
        flags: Vec::new(),
        values: Vec::new(),
        pos: Vec::new(),
    };
    let mut it = w.iter();
    while let Some(x) = it.next() {
        let flag = x
            .strip_prefix('-')
            .filter(|f| f.len() == 1 && a.pos.is_empty());
        match flag.and_then(|f| f.chars().next()) {
            Some(f) if with_value.contains(&f) => {
                let v = it.next().ok_or(format!("-{f} needs a value"))?;
                a.values.push((f, v.clone()));
            }
            Some(f) => a.flags.push(f),
            None => a.pos.push(x.clone()),
        }
    }
    Ok(a)
}

impl Args {
    fn has(&self, f: char) -> bool {
        self.flags.contains(&f)
    }
    fn value(&self, f: char) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == f)
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> Result<&str, String> {
        let p = self.pos.first().ok_or("a path is needed")?;
        if !p.starts_with('/') {
            return Err("Path must start with / character".to_string());
        }
        Ok(p)
    }
}

/// `parent/name`, the root's children without a double slash.
fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// A watch event as zkCli prints it when it fires.
fn print_event(ev: &zookeeper_client::WatchedEvent) {
    println!(
        "\nWATCHER::\n\nWatchedEvent state:SyncConnected type:{:?} path:{}",
        ev.event_type, ev.path
    );
}

/// zkCli's Stat block.
pub fn stat_text(s: &Stat) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "cZxid = 0x{:x}", s.czxid);
    let _ = writeln!(o, "ctime = {}", java_date(s.ctime));
    let _ = writeln!(o, "mZxid = 0x{:x}", s.mzxid);
    let _ = writeln!(o, "mtime = {}", java_date(s.mtime));
    let _ = writeln!(o, "pZxid = 0x{:x}", s.pzxid);
    let _ = writeln!(o, "cversion = {}", s.cversion);
    let _ = writeln!(o, "dataVersion = {}", s.version);
    let _ = writeln!(o, "aclVersion = {}", s.aversion);
    let _ = writeln!(o, "ephemeralOwner = 0x{:x}", s.ephemeral_owner);
    let _ = writeln!(o, "dataLength = {}", s.data_length);
    let _ = writeln!(o, "numChildren = {}", s.num_children);
    o
}

/// zkCli's line for a failed operation on `path`.
fn error_text(e: &Error, path: &str) -> String {
    match e {
        Error::NoNode => format!("Node does not exist: {path}"),
        Error::NodeExists => format!("Node already exists: {path}"),
        Error::BadVersion => format!("version No is not valid : {path}"),
        Error::NotEmpty => format!("Node not empty: {path}"),
        Error::NoAuth => format!("Insufficient permission : {path}"),
        Error::NoChildrenForEphemerals => format!("Ephemerals cannot have children: {path}"),
        Error::InvalidAcl => format!("Acl is not valid : {path}"),
        e => format!("{e} for {path}"),
    }
}

fn perms_text(p: Permission) -> String {
    [
        (Permission::CREATE, 'c'),
        (Permission::DELETE, 'd'),
        (Permission::READ, 'r'),
        (Permission::WRITE, 'w'),
        (Permission::ADMIN, 'a'),
    ]
    .iter()
    .filter(|(bit, _)| p.has(*bit))
    .map(|(_, c)| *c)
    .collect()
}

/// `scheme:id:perms[,scheme:id:perms...]`, as zkCli's AclParser reads it.
fn parse_acl(text: &str) -> Result<Vec<Acl>, String> {
    text.split(',')
        .map(|one| {
            let (rest, perms) = one
                .rsplit_once(':')
                .ok_or(format!("{one} does not have the form scheme:id:perm"))?;
            let (scheme, id) = rest
                .split_once(':')
                .ok_or(format!("{one} does not have the form scheme:id:perm"))?;
            let mut p = Permission::NONE;
            for c in perms.chars() {
                p = p | match c {
                    'r' => Permission::READ,
                    'w' => Permission::WRITE,
                    'c' => Permission::CREATE,
                    'd' => Permission::DELETE,
                    'a' => Permission::ADMIN,
                    _ => return Err(format!("Unknown perm type: {c}")),
                };
            }
            Ok(Acl::new(p, AuthId::new(scheme, id)))
        })
        .collect()
}

impl Shell {
    pub fn new(client: Client, servers: String) -> Shell {
        Shell {
            client,
            servers,
            quit: false,
            history: Vec::new(),
            watches: Vec::new(),
        }
    }

    /// Prints a one-shot watch's event when it fires (`ls -w`, `get -w`).
    fn report_once(&mut self, watcher: zookeeper_client::OneshotWatcher) {
        self.watches.push(tokio::spawn(async move {
            print_event(&watcher.changed().await);
        }));
    }

    pub fn prompt(&self) -> String {
        let state = format!("{:?}", self.client.state()).to_uppercase();
        format!("[zk: {}({}) {}] ", self.servers, state, self.history.len())
    }

    /// Runs one command line, printing its output; false when it failed.
    pub async fn run(&mut self, line: &str) -> bool {
        match run_line(self, line).await {
            Ok(out) => {
                print!("{out}");
                true
            }
            Err(e) => {
                println!("{e}");
                false
            }
        }
    }
}

/// Runs one command line; its output, or zkCli's error line.
pub async fn run_line(sh: &mut Shell, line: &str) -> Result<String, String> {
    let w = words(line);
    let Some((cmd, rest)) = w.split_first() else {
        return Ok(String::new());
    };
    let c = &sh.client;
    let with_stat = |a: &Args, s: &Stat| {
        if a.has('s') {
            stat_text(s)
        } else {
            String::new()
        }
    };
    match cmd.as_str() {
        "ls" => {
            let a = parse(rest, &[])?;
            let path = a.path()?;
            if a.has('R') {
                let mut out = String::new();
                let mut stack = vec![path.to_string()];
                while let Some(p) = stack.pop() {
                    let _ = writeln!(out, "{p}");
                    let mut kids = c.list_children(&p).await.map_err(|e| error_text(&e, &p))?;
                    kids.sort();
                    for k in kids.into_iter().rev() {
                        stack.push(child_path(&p, &k));
                    }
                }
                return Ok(out);
            }
            let (mut kids, stat) = if a.has('w') {
                let (k, s, watcher) = c
                    .get_and_watch_children(path)
                    .await
                    .map_err(|e| error_text(&e, path))?;
                sh.report_once(watcher);
                (k, s)
            } else {
                c.get_children(path)
                    .await
                    .map_err(|e| error_text(&e, path))?
            };
            kids.sort();
            Ok(format!("[{}]\n{}", kids.join(", "), with_stat(&a, &stat)))
        }
        "get" => {
            let a = parse(rest, &[])?;
            let path = a.path()?;
            let (data, stat) = if a.has('w') {
                let (d, s, watcher) = c
                    .get_and_watch_data(path)
                    .await
                    .map_err(|e| error_text(&e, path))?;
                sh.report_once(watcher);
                (d, s)
            } else {
                c.get_data(path).await.map_err(|e| error_text(&e, path))?
            };
            let text = if data.is_empty() && stat.data_length == 0 {
                "null".to_string()
            } else {
                String::from_utf8_lossy(&data).into_owned()
            };
            Ok(format!("{text}\n{}", with_stat(&a, &stat)))
        }
        "stat" => {
            let a = parse(rest, &[])?;
            let path = a.path()?;
            match c.check_stat(path).await.map_err(|e| error_text(&e, path))? {
                Some(s) => Ok(stat_text(&s)),
                None => Err(format!("Node does not exist: {path}")),
            }
        }
        "create" => {
            let a = parse(rest, &['t'])?;
            let path = a.path()?;
            let data = a.pos.get(1).map(String::as_str).unwrap_or("");
            let acl_list = match a.pos.get(2) {
                Some(t) => parse_acl(t)?,
                None => Vec::new(),
            };
            let acls = if acl_list.is_empty() {
                Acls::anyone_all()
            } else {
                Acls::new(&acl_list)
            };
            let seq = a.has('s');
            let mode = match (a.has('e'), a.has('c'), seq) {
                (true, _, true) => CreateMode::EphemeralSequential,
                (true, _, false) => CreateMode::Ephemeral,
                (false, true, _) => CreateMode::Container,
                (false, false, true) => CreateMode::PersistentSequential,
                (false, false, false) => CreateMode::Persistent,
            };
            let mut opts = mode.with_acls(acls);
            if let Some(t) = a.value('t') {
                let ms: u64 = t.parse().map_err(|_| format!("-t {t}: not a number"))?;
                opts = opts.with_ttl(std::time::Duration::from_millis(ms));
            }
            let (_, seqno) = c
                .create(path, data.as_bytes(), &opts)
                .await
                .map_err(|e| error_text(&e, path))?;
            let created = if seq {
                format!("{path}{seqno}")
            } else {
                path.to_string()
            };
            Ok(format!("Created {created}\n"))
        }
        "set" => {
            let a = parse(rest, &['v'])?;
            let path = a.path()?;
            let data = a.pos.get(1).ok_or("set needs data")?;
            let version = a
                .value('v')
                .map(|v| v.parse::<i32>())
                .transpose()
                .map_err(|_| "-v: not a number")?;
            let stat = c
                .set_data(path, data.as_bytes(), version)
                .await
                .map_err(|e| error_text(&e, path))?;
            Ok(with_stat(&a, &stat))
        }
        "delete" => {
            let a = parse(rest, &['v'])?;
            let path = a.path()?;
            let version = a
                .value('v')
                .map(|v| v.parse::<i32>())
                .transpose()
                .map_err(|_| "-v: not a number")?;
            c.delete(path, version)
                .await
                .map_err(|e| error_text(&e, path))?;
            Ok(String::new())
        }
        "deleteall" | "rmr" => {
            let a = parse(rest, &[])?;
            let path = a.path()?.to_string();
            // Children first: a depth-first list, deleted from the deepest up.
            let mut order = Vec::new();
            let mut stack = vec![path.clone()];
            while let Some(p) = stack.pop() {
                let kids = match c.list_children(&p).await {
                    Ok(k) => k,
                    Err(Error::NoNode) => continue,
                    Err(e) => return Err(error_text(&e, &p)),
                };
                for k in kids {
                    stack.push(child_path(&p, &k));
                }
                order.push(p);
            }
            for p in order.iter().rev() {
                match c.delete(p, None).await {
                    Ok(()) | Err(Error::NoNode) => {}
                    Err(e) => return Err(error_text(&e, p)),
                }
            }
            Ok(String::new())
        }
        "getAcl" => {
            let a = parse(rest, &[])?;
            let path = a.path()?;
            let (acls, stat) = c.get_acl(path).await.map_err(|e| error_text(&e, path))?;
            let mut out = String::new();
            for acl in &acls {
                let _ = writeln!(
                    out,
                    "'{},'{}\n: {}",
                    acl.scheme(),
                    acl.id(),
                    perms_text(acl.permission())
                );
            }
            Ok(format!("{out}{}", with_stat(&a, &stat)))
        }
        "setAcl" => {
            let a = parse(rest, &['v'])?;
            let path = a.path()?;
            let acls = parse_acl(a.pos.get(1).ok_or("setAcl needs an acl")?)?;
            let version = a
                .value('v')
                .map(|v| v.parse::<i32>())
                .transpose()
                .map_err(|_| "-v: not a number")?;
            let stat = c
                .set_acl(path, &acls, version)
                .await
                .map_err(|e| error_text(&e, path))?;
            Ok(with_stat(&a, &stat))
        }
        "addauth" => {
            let a = parse(rest, &[])?;
            let scheme = a.pos.first().ok_or("addauth needs a scheme")?;
            let auth = a.pos.get(1).map(String::as_str).unwrap_or("");
            c.auth(scheme, auth.as_bytes())
                .await
                .map_err(|e| format!("{e}"))?;
            Ok(String::new())
        }
        "sync" => {
            let a = parse(rest, &[])?;
            let path = a.path()?;
            c.sync(path).await.map_err(|e| error_text(&e, path))?;
            Ok("Sync is OK\n".to_string())
        }
        "addWatch" => {
            let a = parse(rest, &['m'])?;
            let path = a.path()?;
            let mode = match a.value('m').map(str::to_ascii_uppercase).as_deref() {
                Some("PERSISTENT") => AddWatchMode::Persistent,
                None | Some("PERSISTENT_RECURSIVE") => AddWatchMode::PersistentRecursive,
                Some(m) => return Err(format!("{m} is not a valid mode")),
            };
            let mut watcher = c
                .watch(path, mode)
                .await
                .map_err(|e| error_text(&e, path))?;
            sh.watches.push(tokio::spawn(async move {
                loop {
                    print_event(&watcher.changed().await);
                }
            }));
            Ok(String::new())
        }
        "whoami" => {
            let users = c.list_auth_users().await.map_err(|e| format!("{e}"))?;
            let mut out = String::from("Auth scheme: User\n");
            for u in users {
                let _ = writeln!(out, "{}: {}", u.scheme(), u.user());
            }
            Ok(out)
        }
        "getEphemerals" => {
            let a = parse(rest, &[])?;
            let path = a.pos.first().map(String::as_str).unwrap_or("/");
            let mut e = c
                .list_ephemerals(path)
                .await
                .map_err(|e| error_text(&e, path))?;
            e.sort();
            Ok(format!("[{}]\n", e.join(", ")))
        }
        "getAllChildrenNumber" => {
            let a = parse(rest, &[])?;
            let path = a.path()?;
            let n = c
                .count_descendants_number(path)
                .await
                .map_err(|e| error_text(&e, path))?;
            Ok(format!("{n}\n"))
        }
        "history" => Ok(sh
            .history
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{i} - {l}\n"))
            .collect()),
        "quit" | "close" | "exit" => {
            sh.quit = true;
            Ok(String::new())
        }
        "help" => Ok(HELP.to_string()),
        other => Err(format!(
            "Command not found: Command not found {other}\n{HELP}"
        )),
    }
}
