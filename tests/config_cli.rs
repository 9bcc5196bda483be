//! The binary's configuration handling: zoo.cfg startup, bad values, unknown keys.

mod common;

use std::process::Command;

fn zabd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zabd"))
}

#[test]
fn bad_value_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(&cfg, "tickTime=2000\nclientPort=notaport\n").unwrap();
    let out = zabd().arg("--config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zoo.cfg: clientPort:"), "{err}");

    let toml = dir.path().join("z.toml");
    std::fs::write(&toml, "tick_time = -1\n").unwrap();
    let out = zabd().arg("--config").arg(&toml).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("z.toml"));
}

#[test]
fn starts_from_a_zoo_cfg_and_warns_on_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=500\ndataDir={}\nclientPort=0\nclientPortAddress=127.0.0.1\n\
             4lw.commands.whitelist=ruok,conf\nmadeUpKey=1\nadmin.enableServer=false\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = zabd()
        .arg("--config")
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("zabd: serving clients on ")
        .unwrap()
        .to_string();
    let four = |w: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(w.as_bytes()).unwrap();
        let mut o = String::new();
        s.read_to_string(&mut o).unwrap();
        o
    };
    assert_eq!(four("ruok"), "imok");
    let conf = four("conf");
    assert!(conf.contains("tickTime=500"), "{conf}");
    assert!(conf.contains("minSessionTimeout=1000"), "{conf}");
    assert!(four("srvr").contains("not in the whitelist"));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains("madeUpKey"), "{log}");
}

#[test]
fn logs_are_plain_text_off_a_terminal() {
    // The harness reads the server's output through a pipe, as a log file or journald would.
    let z = common::Zabd::start();
    common::wait_until("the start is logged", || {
        z.log().contains("zabd standalone server started")
    });
    let log = z.log();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log:\n{log}"
    );
}

#[test]
fn an_invalid_zabd_log_is_an_error_not_silence() {
    // A missing config file: the log filter is checked before it is read.
    let run = |filter: &str| {
        zabd()
            .env("ZABD_LOG", filter)
            .args(["--config", "/nonexistent/zabd.toml"])
            .output()
            .unwrap()
    };
    for bad in ["verbose", "zabd=loud", "info,chatty"] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "ZABD_LOG={bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ZABD_LOG"), "ZABD_LOG={bad}: {err}");
    }
    // A valid one gets as far as the configuration.
    let out = run("zabd::server=debug,warn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("ZABD_LOG") && err.contains("nonexistent"),
        "{err}"
    );
}

#[test]
fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let z = common::Zabd::start();
    let data = z.data_dir();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("second.toml");
    std::fs::write(
        &cfg,
        format!(
            "client_port = 0\nclient_port_address = \"127.0.0.1\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
    let out = zabd().arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("zabd.lock"), "{err}");
    assert!(err.contains(&format!("pid {}", z.pid())), "{err}");
    // The first one serves on.
    assert_eq!(z.four("ruok"), "imok");
}
