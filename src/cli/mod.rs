//! `zabd cli`: a client shell with zkCli's verbs and output, over the `zookeeper-client`
//! crate. Interactive with line editing and history (`~/.zabd_history`), or scripted: `-c
//! "command"` runs one command, and commands piped on stdin run one per line. The exit code
//! is 0 when every command succeeded, 1 otherwise.
//!
//! Owns: parsing a command line and printing its result as zkCli does (the Stat block, the
//! `[a, b]` lists, zkCli's error lines). It is a client like any other: it never touches
//! server state but through the protocol.

mod commands;

use std::time::Duration;

pub use commands::run_line;

/// Options of `zabd cli`.
pub struct Options {
    pub servers: String,
    pub command: Option<String>,
    pub session_timeout: Duration,
}

/// Runs the shell; the process exit code.
pub async fn run(o: Options) -> i32 {
    let client = match zookeeper_client::Client::connector()
        .with_session_timeout(o.session_timeout)
        .connect(&o.servers)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("zabd cli: cannot connect to {}: {e}", o.servers);
            return 1;
        }
    };
    let mut shell = commands::Shell::new(client, o.servers.clone());
    if let Some(cmd) = o.command {
        return if shell.run(&cmd).await { 0 } else { 1 };
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let mut ok = true;
        let mut line = String::new();
        loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !shell.run(line.trim()).await {
                        ok = false;
                    }
                    if shell.quit {
                        break;
                    }
                }
            }
        }
        return if ok { 0 } else { 1 };
    }
    interactive(&mut shell).await;
    0
}

async fn interactive(shell: &mut commands::Shell) {
    let mut rl = match rustyline::DefaultEditor::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zabd cli: no line editor: {e}");
            return;
        }
    };
    let history = std::env::var("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".zabd_history"))
        .ok();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!("Connected to {}; help lists the commands.", shell.servers);
    while !shell.quit {
        let prompt = shell.prompt();
        match rl.readline(&prompt) {
            Ok(line) => {
                let line = line.trim().to_string();
                if line.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(line.as_str());
                shell.history.push(line.clone());
                shell.run(&line).await;
            }
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => break,
        }
    }
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
}
