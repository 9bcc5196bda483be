//! The AdminServer's commands: `/commands/<name>` answered as ZooKeeper 3.8's JSON, with
//! its field names (`server/admin/Commands.java`). Each answer carries `"command"` and
//! `"error"` as ZooKeeper's do. The four-letter word of the same meaning is accepted as
//! an alias (`/commands/mntr`).

use super::monitor::{self, Value as Figure};
use super::{version_line, znode_count, ServerInfo};
use crate::engine::Engine;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Every command, by primary name, with its aliases.
pub const COMMANDS: [(&str, &[&str]); 25] = [
    ("configuration", &["conf", "config"]),
    ("connection_stat_reset", &["crst"]),
    ("connections", &["cons"]),
    ("dirs", &[]),
    ("dump", &[]),
    ("environment", &["envi", "env"]),
    ("get_trace_mask", &["gtmk"]),
    ("hash", &[]),
    ("initial_configuration", &["icfg"]),
    ("is_read_only", &["isro"]),
    ("last_snapshot", &["lsnp"]),
    ("leader", &["lead"]),
    ("monitor", &["mntr"]),
    ("observer_connection_stat_reset", &["orst"]),
    ("observers", &["obsr"]),
    ("ruok", &[]),
    ("server_stats", &["srvr"]),
    ("set_trace_mask", &["stmk"]),
    ("stat_reset", &["srst"]),
    ("stats", &["stat"]),
    ("voting_view", &["voting_view"]),
    ("watch_summary", &["wchs"]),
    ("watches", &["wchc"]),
    ("watches_by_path", &["wchp"]),
    ("zabstate", &[]),
];

/// The primary name of `name` (itself or an alias); None for an unknown command.
pub fn primary(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|(p, aliases)| *p == name || aliases.contains(&name))
        .map(|(p, _)| *p)
}

/// Runs a command (by primary name) with its query parameters.
pub fn run(
    name: &'static str,
    params: &HashMap<String, String>,
    engine: &mut Engine,
    info: &ServerInfo,
) -> Value {
    let mut out = match body(name, params, engine, info) {
        Ok(Value::Object(m)) => m,
        Ok(_) => Map::new(),
        Err(e) => {
            let mut m = Map::new();
            m.insert("error".into(), json!(e));
            m.insert("command".into(), json!(name));
            return Value::Object(m);
        }
    };
    out.insert("command".into(), json!(name));
    out.insert("error".into(), Value::Null);
    Value::Object(out)
}

fn body(
    name: &str,
    params: &HashMap<String, String>,
    engine: &mut Engine,
    info: &ServerInfo,
) -> Result<Value, String> {
    Ok(match name {
        "configuration" => Value::Object(info.configuration.clone()),
        "connection_stat_reset" => {
            engine.reset_connection_stats();
            json!({})
        }
        "connections" => json!({
            "connections": connections(engine, info, false),
            "secure_connections": [],
        }),
        "dirs" => json!({"datadir_size": info.dir_sizes.0, "logdir_size": info.dir_sizes.1}),
        "dump" => dump(engine),
        "environment" => Value::Object(
            monitor::environment(info)
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect(),
        ),
        "get_trace_mask" => json!({"tracemask": engine.stats.trace_mask()}),
        "hash" => json!({"digests": [{
            "zxid": engine.last_zxid(),
            "digest": engine.tree.digest,
            "digestVersion": 2,
        }]}),
        "initial_configuration" => json!({"initial_configuration": info.initial_config}),
        "is_read_only" => json!({"read_only": info.mode == "read-only"}),
        "last_snapshot" => {
            let (zxid, at) = info.io.last_snapshot;
            if zxid < 0 {
                json!({"zxid": format!("{:x}", engine.last_zxid()), "timestamp": 0})
            } else {
                json!({"zxid": format!("{zxid:x}"), "timestamp": at / 1000})
            }
        }
        "leader" => leader(info)?,
        "monitor" => Value::Object(
            monitor::rows(engine, info)
                .into_iter()
                .map(|r| (r.key, r.value.json()))
                .collect(),
        ),
        "observer_connection_stat_reset" => json!({}),
        "observers" => observers(info),
        "ruok" => json!({}),
        "server_stats" => server_stats(engine, info),
        "set_trace_mask" => {
            let mask = params
                .get("traceMask")
                .and_then(|m| m.parse::<i64>().ok())
                .ok_or("setTraceMask requires long traceMask argument")?;
            engine.stats.trace_mask = Some(mask);
            json!({"tracemask": mask})
        }
        "stat_reset" => {
            engine.stats.reset();
            json!({})
        }
        "stats" => {
            let mut v = server_stats(engine, info);
            v["connections"] = json!(connections(engine, info, true));
            v["secure_connections"] = json!([]);
            v
        }
        "voting_view" => voting_view(info),
        "watch_summary" => json!({
            "num_connections": engine.tree.watches.by_session().len(),
            "num_paths": engine.tree.watches.paths(),
            "num_total_watches": engine.tree.watches.data_count(),
        }),
        "watches" => {
            let m: Map<String, Value> = engine
                .tree
                .watches
                .by_session()
                .into_iter()
                .map(|(s, paths)| (s.to_string(), json!(paths)))
                .collect();
            json!({"session_id_to_watched_paths": m})
        }
        "watches_by_path" => {
            let m: Map<String, Value> = engine
                .tree
                .watches
                .by_path()
                .into_iter()
                .map(|(p, ids)| (p.to_string(), json!(ids)))
                .collect();
            json!({"path_to_session_ids": m})
        }
        "zabstate" => match &info.quorum {
            Some(q) => {
                let z = engine.last_zxid();
                json!({
                    "myid": q.my_id,
                    "is_leader": q.leader == Some(q.my_id),
                    "quorum_address": q.addresses.0,
                    "election_address": q.addresses.1,
                    "client_address": q.addresses.2,
                    "voting": q.voters.contains(&q.my_id),
                    "last_zxid": format!("0x{z:x}"),
                    "zab_epoch": z >> 32,
                    "zab_counter": z & 0xffff_ffff,
                    "zabstate": q.zab_state,
                })
            }
            None => json!({"voting": false, "zabstate": ""}),
        },
        other => return Err(format!("Unknown command: {other}")),
    })
}

fn connections(engine: &Engine, info: &ServerInfo, brief: bool) -> Vec<Value> {
    engine
        .connection_views()
        .into_iter()
        .map(|c| {
            let st = c.stats;
            let addr = info.peers.get(&c.conn).cloned().unwrap_or(c.ip.clone());
            let mut m = json!({
                "remote_socket_address": addr,
                "interest_ops": 1,
                "outstanding_requests": c.queued,
                "packets_received": st.received,
                "packets_sent": st.sent,
            });
            if !brief {
                m["session_id"] = json!(c.session.unwrap_or(0));
                m["last_operation"] = json!(st.last_op);
                m["established"] = json!(st.established_ms);
                m["session_timeout"] = json!(c.session_timeout);
                m["last_cxid"] = json!(st.last_cxid);
                m["last_zxid"] = json!(st.last_zxid);
                m["last_response_time"] = json!(st.last_response_ms);
                m["last_latency"] = json!(st.last_latency);
                m["min_latency"] = json!(st.min_latency);
                m["avg_latency"] = json!(st.avg_latency());
                m["max_latency"] = json!(st.max_latency);
            }
            m
        })
        .collect()
}

fn dump(engine: &Engine) -> Value {
    let now = engine.clock();
    let sets: Map<String, Value> = engine
        .sessions
        .expiry_sets()
        .into_iter()
        .map(|(at, ids)| ((now.wall_ms + at - now.mono_ms).to_string(), json!(ids)))
        .collect();
    let eph: Map<String, Value> = monitor::ephemerals_by_session(engine)
        .into_iter()
        .map(|(id, paths)| (id.to_string(), json!(paths)))
        .collect();
    json!({"expiry_time_to_session_ids": sets, "session_id_to_ephemeral_paths": eph})
}

fn server_stats(engine: &Engine, info: &ServerInfo) -> Value {
    let st = &engine.stats;
    let rsp = st
        .response_size
        .map_or((-1, -1, -1), |(a, b, c)| (a as i64, b as i64, c as i64));
    let response = json!({
        "last_buffer_size": rsp.0,
        "min_buffer_size": rsp.1,
        "max_buffer_size": rsp.2,
    });
    let avg = Figure::Float(st.avg_latency()).json();
    let mut v = json!({
        "version": version_line(),
        "read_only": info.mode == "read-only",
        "server_stats": {
            "packets_sent": st.packets_sent,
            "packets_received": st.packets_received,
            "fsync_threshold_exceed_count": info.io.fsync_threshold_exceeded,
            "client_response_stats": response,
            "provider_null": false,
            "data_dir_size": info.dir_sizes.0,
            "log_dir_size": info.dir_sizes.1,
            "server_state": info.mode,
            "last_processed_zxid": engine.last_zxid(),
            "outstanding_requests": engine.outstanding(),
            "avg_latency": avg,
            "max_latency": st.latency_max_ms,
            "min_latency": st.latency_min_ms,
            "num_alive_client_connections": engine.connection_count(),
            "uptime": info.uptime_ms,
            "auth_failed_count": st.auth_failed,
            "non_mtlsremote_conn_count": 0,
            "non_mtlslocal_conn_count": 0,
        },
        "client_response": response,
    });
    if info.mode == "leader" {
        let (last, min, max) = st.proposal_sizes();
        v["proposal_stats"] =
            json!({"last_buffer_size": last, "min_buffer_size": min, "max_buffer_size": max});
    }
    v["node_count"] = json!(znode_count(engine));
    v
}

fn leader(info: &ServerInfo) -> Result<Value, String> {
    let q = info.quorum.as_ref().ok_or("server is not initialized")?;
    let Some(leader) = q.leader else {
        return Ok(json!({"is_leader": false, "leader_id": -1, "leader_ip": ""}));
    };
    let host = q
        .members
        .iter()
        .find(|(id, _)| *id == leader)
        .and_then(|(_, spec)| spec.split(':').next())
        .unwrap_or("");
    Ok(json!({
        "is_leader": leader == q.my_id,
        "leader_id": leader,
        "leader_ip": host,
    }))
}

fn observers(info: &ServerInfo) -> Value {
    let Some(q) = &info.quorum else {
        return json!({"synced_observers": 0, "observers": []});
    };
    let obs: Vec<Value> = q
        .learners
        .iter()
        .filter(|(_, _, observer)| *observer)
        .map(|(id, addr, _)| json!({"sid": id, "address": addr}))
        .collect();
    json!({"synced_observers": q.synced_observers, "observers": obs})
}

fn voting_view(info: &ServerInfo) -> Value {
    let Some(q) = &info.quorum else {
        return json!({"current_config": {}});
    };
    let m: Map<String, Value> = q
        .members
        .iter()
        .filter(|(id, _)| q.voters.contains(id))
        .map(|(id, spec)| (id.to_string(), json!(spec)))
        .collect();
    json!({"current_config": m})
}
