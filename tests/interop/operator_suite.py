#!/usr/bin/env python3
"""The operator's surface of zabd, compared field by field with Apache ZooKeeper 3.8
(Debian's) running beside it: the same client state (kazoo: nodes, ephemerals, watches)
on both, then every four-letter word, every AdminServer command and the mntr keys.
Then zabd's Prometheus endpoint, parsed by the official Python client's parser, on a
3-member ensemble: every ZooKeeper figure of mntr is exported, and every metric that a
published ZooKeeper Grafana dashboard queries is there (except the JVM's own).

Usage: operator_suite.py ZABD_BIN ZK_CLASSPATH
"""
import json, os, re, signal, socket, struct, subprocess, sys, tempfile, time, urllib.request
from kazoo.client import KazooClient
from prometheus_client.parser import text_string_to_metric_families

zabd, zkcp = sys.argv[1], sys.argv[2]
work = tempfile.mkdtemp(prefix="zabd-operator-")
procs, failures, passed = [], [], [0]

def ok(cond, what):
    if cond:
        passed[0] += 1
    else:
        failures.append(what)
        print("FAIL:", what)

def free_ports(n):
    ss = [socket.socket() for _ in range(n)]
    for s in ss:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in ss]
    for s in ss:
        s.close()
    return ports

def word(port, w, extra=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(w.encode() + extra)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out.decode()

def wait_ruok(port):
    end = time.time() + 120
    while time.time() < end:
        try:
            if word(port, "ruok") == "imok":
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answers ruok on {port}")

def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()

def start_zk(d, client, admin):
    os.makedirs(d)
    cfg = f"{d}.cfg"
    with open(cfg, "w") as f:
        f.write(f"tickTime=2000\ndataDir={d}\nclientPort={client}\nclientPortAddress=127.0.0.1\n"
                f"4lw.commands.whitelist=*\nadmin.enableServer=true\nadmin.serverAddress=127.0.0.1\n"
                f"admin.serverPort={admin}\n")
    p = subprocess.Popen(["java", "-cp", zkcp, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg],
                         stdout=subprocess.DEVNULL, stderr=open(f"{d}.log", "w"))
    procs.append(p)

def start_zabd(d, toml):
    os.makedirs(d)
    cfg = f"{d}.toml"
    with open(cfg, "w") as f:
        f.write(toml)
    p = subprocess.Popen([zabd, "--config", cfg], stdout=open(f"{d}.out", "w"),
                         stderr=open(f"{d}.log", "w"))
    procs.append(p)
    return p

def same_state(where):
    """The same nodes, ephemerals and watches on either server; returns the client.
    `where`: a client port, or a connect string."""
    hosts = where if isinstance(where, str) else f"127.0.0.1:{where}"
    zk = KazooClient(hosts=hosts, timeout=30)
    zk.start(timeout=60)
    zk.create("/a", b"hello")
    zk.create("/a/e", b"x", ephemeral=True)
    zk.create("/a/s-", b"", ephemeral=True, sequence=True)
    zk.get("/a", watch=lambda e: None)
    zk.exists("/nothere", watch=lambda e: None)
    zk.get_children("/a", watch=lambda e: None)
    return zk

def keys_of(text, sep):
    return [l.split(sep, 1)[0] for l in text.splitlines() if sep in l]

# mntr keys ZooKeeper 3.8 prints for its own machinery, which zabd leaves out
# (docs/monitoring.md lists them with the reason).
ZK_ONLY = re.compile(r"^zk_((avg|min|max|cnt|sum|p50|p95|p99|p999)_)?("
    r"non_mtls_(remote|local)_conn_count|connection_drop_probability|outstanding_tls_handshake|"
    r"watch_bytes|outstanding_changes_(removed|queued)|throttled_ops|stale_requests(_dropped)?|"
    r"large_requests_rejected|insecure_admin_count|cnxn_closed_without_zk_server_running|"
    r"dead_watchers_(queued|cleared|cleaner_latency)|connection_drop_count|"
    r"response_packet_(get_children_)?cache_(hits|misses)|add_dead_watcher_stall_time|request_throttle_wait_count|"
    r"requests_not_forwarded_to_commit_processor|ensemble_auth_(success|fail|skip)|prep_processor_request_queued|"
    r"sync_processor_request_queued|request_commit_queued|"
    r"quit_leading_due_to_disloyal_voter|unrecoverable_error_count|unsuccessful_handshake|inflight_(snap|diff)_count|"
    r"skip_learner_request_to_next_processor_count|tls_handshake_exceeded|"
    r"socket_closing_time|proposal_process_time|"
    r"session_queues_drained|(write|read|commit)_commit_proc_req_queued|connection_token_deficit|"
    r"sync_processor_queue_size|prep_processor_queue_size|"
    r"reads_issued_from_session_queue|learner_request_processor_queue_size|reads_after_write_in_session_queue|"
    r"requests_in_session_queue|write_commit_proc_issued|prep_process_time|pending_session_queue_size|"
    r"time_waiting_empty_pool_in_commit_processor_read_ms|commit_process_time|netty_queued_buffer_capacity|"
    r"sync_processor_batch_size|write_batch_time_in_commit_processor|read_commit_proc_issued|"
    r"concurrent_request_processing_in_commit_processor|sync_process_time|"
    r"prep_processor_queue_time_ms|jvm_pause_time_ms|close_session_prep_time|(read|write)_commitproc_time_ms|"
    r"local_write_committed_time_ms|request_throttle_queue_time_ms|om_(commit|proposal)_process_time_ms|"
    r"(read|write)_final_proc_time_ms|"
    r"sync_processor_queue_and_flush_time_ms|server_write_committed_time_ms|"
    r"sync_processor_queue_time_ms|sync_processor_queue_flush_time_ms|stale_replies|.*_per_namespace|"
    r"\d+_learner_handler_qp_(size|time_ms))$")
# zabd's keys beyond ZooKeeper 3.8's mntr: ZooKeeper 3.5's fsync count, and its own.
ZABD_EXTRA = re.compile(r"^(zk_fsync_threshold_exceed_count|zabd_.*)$")

try:
    zk_client, zk_admin, zd_client, zd_admin = free_ports(4)
    start_zk(f"{work}/zk", zk_client, zk_admin)
    start_zabd(f"{work}/zabd", f'client_port = {zd_client}\nclient_port_address = "127.0.0.1"\n'
               f'data_dir = "{work}/zabd/data"\nfour_letter_words = ["*"]\n'
               f'[admin]\naddress = "127.0.0.1"\nport = {zd_admin}\n')
    wait_ruok(zk_client)
    wait_ruok(zd_client)
    a, b = same_state(zk_client), same_state(zd_client)
    sid = {"zk": "0x%x" % a.client_id[0], "zabd": "0x%x" % b.client_id[0]}
    ans = {}
    for name, port in (("zk", zk_client), ("zabd", zd_client)):
        ans[name] = {w: word(port, w).replace(sid[name], "SID")
                     for w in ["ruok", "isro", "gtmk", "srvr", "stat", "mntr", "conf", "envi", "cons",
                               "wchs", "wchc", "wchp", "dump", "dirs", "hash"]}
        ans[name]["stmk"] = word(port, "stmk", struct.pack(">q", 511))
        ans[name]["gtmk2"] = word(port, "gtmk")
        ans[name]["crst"] = word(port, "crst")
        ans[name]["srst"] = word(port, "srst")
    z, d = ans["zk"], ans["zabd"]
    for w in ["ruok", "isro", "gtmk", "stmk", "gtmk2", "crst", "srst", "wchs", "wchc", "wchp"]:
        ok(z[w] == d[w], f"{w}: ZooKeeper {z[w]!r}, zabd {d[w]!r}")
    for w in ["srvr", "stat"]:
        # ZooKeeper lists the four-letter word's own connection among the clients; zabd
        # lists sessions' connections only (docs/monitoring.md).
        lines = lambda t: [k for k in keys_of(t, ":") if not k.startswith(" /")]
        ok(lines(z[w]) == lines(d[w]), f"{w} lines: {lines(z[w])} vs {lines(d[w])}")
        for key in ["Outstanding", "Zxid", "Mode", "Node count"]:
            zv = [l for l in z[w].splitlines() if l.startswith(key + ":")]
            dv = [l for l in d[w].splitlines() if l.startswith(key + ":")]
            ok(zv == dv, f"{w} {key}: {zv} vs {dv}")
    ok(keys_of(z["conf"], "=") == keys_of(d["conf"], "="), f"conf keys: {keys_of(z['conf'], '=')} vs {keys_of(d['conf'], '=')}")
    for key in ["tickTime", "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout", "serverId",
                "secureClientPort", "clientPortListenBacklog"]:
        zv = [l for l in z["conf"].splitlines() if l.startswith(key + "=")]
        dv = [l for l in d["conf"].splitlines() if l.startswith(key + "=")]
        ok(zv == dv, f"conf {key}: {zv} vs {dv}")
    ok(keys_of(z["dirs"], ":") == keys_of(d["dirs"], ":"), "dirs keys")
    envi_extra = {"zabd.version", "zookeeper.dataDir", "zookeeper.dataLogDir"}
    zk_envi = set(keys_of(z["envi"], "=")) - {"Environment:"}
    zd_envi = set(keys_of(d["envi"], "="))
    ok(zd_envi - envi_extra <= zk_envi, f"envi keys not in ZooKeeper's: {zd_envi - envi_extra - zk_envi}")
    ok(all(re.fullmatch(r"[0-9a-f]+: -?\d+", l) for l in d["hash"].splitlines()), f"hash: {d['hash']!r}")
    # cons: the client's line has ZooKeeper's fields in its order.
    fields = lambda t: [re.findall(r"[,(]([a-z]+)=", l) for l in t.splitlines() if "SID" in l]
    ok(fields(z["cons"]) == fields(d["cons"]) and fields(d["cons"]), f"cons fields: {fields(z['cons'])} vs {fields(d['cons'])}")
    # dump: the same session sets shape and ephemerals.
    eph = lambda t: sorted(l.strip() for l in t.split("ephemeral nodes dump:")[1].split("Connections dump:")[0].splitlines())
    ok(eph(z["dump"]) == eph(d["dump"]), f"dump ephemerals: {eph(z['dump'])} vs {eph(d['dump'])}")
    ok(re.search(r"Session Sets \(\d+\)/\(1\):", d["dump"]) and re.search(r"\d+ expire at \w{3} \w{3} \d\d \d\d:\d\d:\d\d UTC \d{4}:\n\tSID", d["dump"]),
       f"dump sets: {d['dump']!r}")
    # mntr: the same keys, apart from ZooKeeper's machinery and zabd's own.
    zk_keys = [k for k in keys_of(z["mntr"], "\t")]
    zd_keys = [k for k in keys_of(d["mntr"], "\t")]
    missing = [k for k in zk_keys if k not in zd_keys and not ZK_ONLY.match(k)]
    extra = [k for k in zd_keys if k not in zk_keys and not ZABD_EXTRA.match(k)]
    ok(not missing, f"mntr keys ZooKeeper has and zabd lacks: {missing}")
    ok(not extra, f"mntr keys only zabd has: {extra}")
    zm = dict(l.split("\t", 1) for l in z["mntr"].splitlines())
    dm = dict(l.split("\t", 1) for l in d["mntr"].splitlines())
    for k in ["zk_server_state", "zk_ephemerals_count", "zk_znode_count", "zk_global_sessions",
              "zk_watch_count", "zk_approximate_data_size", "zk_local_sessions", "zk_outstanding_requests",
              "zk_auth_failed_count", "zk_digest_mismatches_count", "zk_max_file_descriptor_count"]:
        ok(zm.get(k) == dm.get(k), f"mntr {k}: ZooKeeper {zm.get(k)}, zabd {dm.get(k)}")
    # AdminServer: every command ZooKeeper lists (but system_properties, the JVM's), same keys.
    zk_cmds = re.findall(r'commands/([a-z_]+)"', get(f"http://127.0.0.1:{zk_admin}/commands"))
    zd_cmds = re.findall(r'commands/([a-z_]+)"', get(f"http://127.0.0.1:{zd_admin}/commands"))
    ok(set(zk_cmds) - {"system_properties"} == set(zd_cmds), f"/commands: {sorted(set(zk_cmds) ^ set(zd_cmds))}")
    for c in zk_cmds:
        if c in ("system_properties", "connection_stat_reset", "stat_reset", "observer_connection_stat_reset"):
            continue
        zj = json.loads(get(f"http://127.0.0.1:{zk_admin}/commands/{c}"))
        dj = json.loads(get(f"http://127.0.0.1:{zd_admin}/commands/{c}"))
        if c == "environment":
            ok(set(dj) - envi_extra - {"command", "error"} <= set(zj), f"environment keys: {set(dj) - set(zj)}")
            continue
        if c == "monitor":
            continue  # the mntr comparison above covers its keys
        ok(list(zj) == list(dj), f"{c} keys: ZooKeeper {list(zj)}, zabd {list(dj)}")
        for nest in ("server_stats", "client_response"):
            if nest in zj:
                # A serialized Java bean: ZooKeeper's own order varies from run to run.
                ok(set(zj[nest]) == set(dj.get(nest, {})), f"{c}.{nest} keys: {set(zj[nest]) ^ set(dj.get(nest, {}))}")
        for lst in ("connections",):
            if zj.get(lst) and dj.get(lst):
                ok(list(zj[lst][0]) == list(dj[lst][0]), f"{c}.{lst}[0] keys: {list(zj[lst][0])} vs {list(dj[lst][0])}")
        for same in ("read_only", "tracemask", "num_paths", "num_total_watches", "num_connections", "voting", "zabstate"):
            if same in zj:
                ok(zj[same] == dj.get(same), f"{c}.{same}: ZooKeeper {zj[same]}, zabd {dj.get(same)}")
    a.stop(); b.stop()
    # zabd's dump tools read ZooKeeper's own files.
    zk_log = f"{work}/zk/version-2/log.1"
    out = subprocess.run([zabd, "txnlog", "dump", zk_log], capture_output=True, text=True)
    ok(out.returncode == 0 and '"/a/e"' in out.stdout and " createSession " in out.stdout,
       f"txnlog dump of ZooKeeper's log: {out.stdout[:500]} {out.stderr}")
    out = subprocess.run([zabd, "snapshot", "dump", f"{work}/zk/version-2/snapshot.0"], capture_output=True, text=True)
    ok(out.returncode == 0 and "/zookeeper/config" in out.stdout,
       f"snapshot dump of ZooKeeper's snapshot: {out.stdout[:500]} {out.stderr}")

    # Ensembles: three ZooKeeper members beside three zabd members, the same client state;
    # the leader's and a follower's answers compared role by role.
    zp, ports = free_ports(12), free_ports(15)
    for i in range(3):
        d = f"{work}/zk{i+1}"
        os.makedirs(d)
        open(f"{d}/myid", "w").write(f"{i+1}\n")
        with open(f"{d}.cfg", "w") as f:
            f.write(f"tickTime=500\ninitLimit=20\nsyncLimit=5\ndataDir={d}\nclientPort={zp[i*4+2]}\n"
                    f"clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nadmin.enableServer=true\n"
                    f"admin.serverAddress=127.0.0.1\nadmin.serverPort={zp[i*4+3]}\n")
            for j in range(3):
                f.write(f"server.{j+1}=127.0.0.1:{zp[j*4]}:{zp[j*4+1]};127.0.0.1:{zp[j*4+2]}\n")
        procs.append(subprocess.Popen(["java", "-cp", zkcp, "org.apache.zookeeper.server.quorum.QuorumPeerMain", f"{d}.cfg"],
                                      stdout=subprocess.DEVNULL, stderr=open(f"{d}.log", "w")))
    servers = "".join(f'{i+1} = "127.0.0.1:{ports[i*5]}:{ports[i*5+1]};127.0.0.1:{ports[i*5+2]}"\n' for i in range(3))
    for i in range(3):
        start_zabd(f"{work}/m{i+1}", f'server_id = {i+1}\ndata_dir = "{work}/m{i+1}/data"\nfour_letter_words = ["*"]\n'
                   f'tick_time = 500\n[admin]\naddress = "127.0.0.1"\nport = {ports[i*5+4]}\n'
                   f'[metrics]\nenable = true\nhost = "127.0.0.1"\n'
                   f'port = {ports[i*5+3]}\n[servers]\n{servers}')

    def roles(clients):
        end = time.time() + 120
        while time.time() < end:
            modes = []
            for c in clients:
                try:
                    t = word(c, "srvr")
                except OSError:
                    t = ""
                modes.append(([l[6:] for l in t.splitlines() if l.startswith("Mode: ")] or [""])[0])
            if sorted(modes) == ["follower", "follower", "leader"]:
                return modes.index("leader"), modes.index("follower")
            time.sleep(0.2)
        return None, None

    zk_lead, zk_fol = roles([zp[i*4+2] for i in range(3)])
    leader, follower = roles([ports[i*5+2] for i in range(3)])
    ok(zk_lead is not None and leader is not None, "both ensembles elect a leader")
    za = same_state(",".join(f"127.0.0.1:{zp[i*4+2]}" for i in range(3)))
    zb = same_state(",".join(f"127.0.0.1:{ports[i*5+2]}" for i in range(3)))
    for role, zi, di in (("leader", zk_lead, leader), ("follower", zk_fol, follower)):
        zc, dc = zp[zi*4+2], ports[di*5+2]
        zadm, dadm = zp[zi*4+3], ports[di*5+4]
        for w in ("srvr", "stat"):
            lines = lambda t: [k for k in keys_of(t, ":") if not k.startswith(" /") and k != "membership"]
            ok(lines(word(zc, w)) == lines(word(dc, w)), f"{role} {w} lines: {lines(word(zc, w))} vs {lines(word(dc, w))}")
        zconf, dconf = keys_of(word(zc, "conf"), "="), keys_of(word(dc, "conf"), "=")
        ok([k for k in zconf if not k.startswith("server.") and k != "version"] ==
           [k for k in dconf if not k.startswith("server.") and k != "version"], f"{role} conf keys: {zconf} vs {dconf}")
        zk_keys, zd_keys = keys_of(word(zc, "mntr"), "\t"), keys_of(word(dc, "mntr"), "\t")
        missing = [k for k in zk_keys if k not in zd_keys and not ZK_ONLY.match(k)]
        extra = [k for k in zd_keys if k not in zk_keys and not ZABD_EXTRA.match(k) and k != "zk_followers"]
        ok(not missing, f"{role} mntr keys ZooKeeper has and zabd lacks: {missing}")
        ok(not extra, f"{role} mntr keys only zabd has: {extra}")
        zm = dict(l.split("\t", 1) for l in word(zc, "mntr").splitlines())
        dm = dict(l.split("\t", 1) for l in word(dc, "mntr").splitlines())
        for k in ("zk_server_state", "zk_quorum_size", "zk_learners", "zk_synced_followers",
                  "zk_synced_non_voting_followers", "zk_synced_observers", "zk_pending_syncs", "zk_peer_state"):
            ok(zm.get(k) == dm.get(k), f"{role} mntr {k}: ZooKeeper {zm.get(k)}, zabd {dm.get(k)}")
        for c in ("leader", "voting_view", "zabstate", "observers", "server_stats", "configuration", "is_read_only"):
            zj = json.loads(get(f"http://127.0.0.1:{zadm}/commands/{c}"))
            dj = json.loads(get(f"http://127.0.0.1:{dadm}/commands/{c}"))
            ok(list(zj) == list(dj), f"{role} {c} keys: ZooKeeper {list(zj)}, zabd {list(dj)}")
            for same in ("is_leader", "voting", "zabstate", "synced_observers", "read_only"):
                if same in zj:
                    ok(zj[same] == dj.get(same), f"{role} {c}.{same}: ZooKeeper {zj[same]}, zabd {dj.get(same)}")
            if c == "voting_view":
                ok(len(zj["current_config"]) == len(dj["current_config"]) == 3, f"{role} voting_view: {zj} vs {dj}")
    za.stop(); zb.stop()
    text = get(f"http://127.0.0.1:{ports[leader*5+3]}/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    mntr = dict(l.split("\t", 1) for l in word(ports[leader*5+2], "mntr").splitlines())
    summaries = {"fsynctime", "snapshottime", "dbinittime", "startup_txns_loaded", "election_time",
                 "startup_snap_load_time", "startup_txns_load_time", "node_created_watch_count",
                 "node_deleted_watch_count", "node_changed_watch_count", "node_children_watch_count",
                 "propagation_latency", "quorum_ack_latency", "proposal_latency", "proposal_ack_creation_latency",
                 "commit_propagation_latency", "follower_sync_time", "observer_sync_time", "unavailable_time",
                 "leader_unavailable_time", "readlatency", "updatelatency"}
    for k, v in mntr.items():
        name = k[3:] if k.startswith("zk_") else k
        if re.match(r"^(avg|min|max|cnt|sum|p50|p95|p99|p999)_", name) and name.split("_", 1)[1] in summaries:
            continue
        if not re.fullmatch(r"-?[0-9.]+", v) or k == "zabd_tree_digest":
            continue
        ok(name in fams, f"/metrics lacks {name} (mntr {k})")
    for s in summaries:
        f = fams.get(s)
        ok(f is not None and f.type == "summary", f"{s} is a summary")
        if f:
            names = {x.name for x in f.samples}
            ok({s, s + "_count", s + "_sum"} <= names, f"{s} samples: {names}")
    for c in ["digest_mismatches_count", "bytes_received_count", "connection_request_count"]:
        ok(c in fams and fams[c].type == "counter", f"{c} is a counter")
    # grafana/jsonnet-libs zookeeper-observ-lib, dashboards_out/zookeeper-overview.json:
    # every metric its queries use, but the JVM's (jvm_*).
    dashboard = ["avg_latency", "leader_uptime", "max_latency", "min_latency", "num_alive_connections",
                 "outstanding_requests", "process_cpu_seconds_total", "process_max_fds", "process_open_fds",
                 "process_resident_memory_bytes", "process_start_time_seconds", "quorum_size", "watch_count",
                 "znode_count"]
    exported = {s.name for f in fams.values() for s in f.samples}
    for m in dashboard:
        ok(m in exported, f"the dashboard's {m} is exported")
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
    if not os.environ.get("KEEP_WORK"):
        subprocess.run(["rm", "-rf", work])

print(f"operator suite: {passed[0]} checks passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
