//! `zabd cli`: zkCli's commands and output, driven by `-c`, by a script on stdin, and
//! interactively through a pseudo-terminal (tests/interop/cli_pty.py, Python's pty).

mod common;

use common::Zabd;
use std::io::Write;
use std::process::{Command, Stdio};

fn cli(z: &Zabd, args: &[&str]) -> (i32, String) {
    let out = Command::new(common::zabd_bin())
        .arg("cli")
        .arg(&z.addr)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn one_command_with_dash_c_and_its_exit_code() {
    let z = Zabd::start();
    assert_eq!(cli(&z, &["-c", "create /c hi"]), (0, "Created /c\n".into()));
    assert_eq!(
        cli(&z, &["-c", "create /c hi"]),
        (1, "Node already exists: /c\n".into())
    );
    assert_eq!(cli(&z, &["-c", "get /c"]), (0, "hi\n".into()));
    assert_eq!(
        cli(&z, &["-c", "get /missing"]),
        (1, "Node does not exist: /missing\n".into())
    );
}

#[test]
fn a_script_on_stdin_prints_as_zkcli() {
    let z = Zabd::start();
    let mut child = Command::new(common::zabd_bin())
        .args(["cli", &z.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"create /a \"hello world\"\ncreate -e /a/e x\ncreate -s /a/s- \nls /a\n\
              get -s /a\nset -v 0 /a two\nset -v 0 /a three\nstat /a\ngetAcl /a\nsync /a\n\
              getEphemerals /a\ngetAllChildrenNumber /a\nls -R /a\nwhoami\n\
              addauth digest alice:secret\nwhoami\ndelete /a\ndeleteall /a\nls /\n\
              addWatch /w\nhistory\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some commands failed on purpose: {text}"
    );
    for want in [
        "Created /a\n",
        "Created /a/e\n",
        "Created /a/s-0000000001\n",
        "[e, s-0000000001]\n",
        "hello world\ncZxid = 0x",
        "\nnumChildren = 2\n",
        "version No is not valid : /a\n",
        "dataVersion = 1\n",
        "'world,'anyone\n: cdrwa\n",
        "Sync is OK\n",
        "[/a/e]\n",
        "2\n",
        "/a\n/a/e\n/a/s-0000000001\n",
        "Auth scheme: User\nip: 127.0.0.1\n",
        "digest: alice\n",
        "Node not empty: /a\n",
        "[zookeeper]\n",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    // The ctime line is Java's Date format.
    assert!(
        text.lines()
            .any(|l| l.starts_with("ctime = ") && l.contains(" UTC 20")),
        "{text}"
    );
}

#[test]
fn interactively_through_a_pseudo_terminal() {
    let z = Zabd::start();
    let home = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/cli_pty.py");
    let out = Command::new("python3")
        .args([script, &common::zabd_bin(), &z.addr])
        .arg(home.path())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
