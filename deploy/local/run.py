"""Runs a compose profile of payd's as plain processes on 127.0.0.1, under its limits.

No Docker engine runs on our machines, so this reads the profile's compose file
(deploy/compose/PROFILE/compose.yaml) and starts each service from the same values: payd's
command and environment, the same nginx.conf and prometheus.yml, PostgreSQL with the same
`-c` settings (a private cluster of its own, initdb'd for the run), Redis with the same
arguments. Host names become 127.0.0.1 and each service's ports become free local ports.
Each service with `deploy.resources.limits` runs in cgroup-v1 groups of its own: a CPU quota
(cpu.cfs_quota_us) and a memory limit (memory.limit_in_bytes) as Docker would set them.
At the end (SIGINT/SIGTERM, or when the services are all gone) it prints, per service, the
quota, the throttled periods and the peak memory against the limit, then removes the groups
and everything it made.

Not run here: RabbitMQ (the machine's own node is used, with a vhost of the run: not
capped) and Grafana (not packaged by Debian; its dashboard is checked offline by
deploy/checks/promql.py).

usage: run.py PROFILE [--port N] [--state FILE] [--payd PATH] [--no-memory-limit] [--keep]
              [--logs DIR]
  --state FILE   written once every service is ready: {"services": {name: {"ports":
                 {container_port: local_port}, "pids": [...]}}, "url": ...}
  env PROCESSOR_DEFAULT_URL / PROCESSOR_FALLBACK_URL: the contest's processors (otherwise
  two `payd processor-sim` are started, outside any quota: they are the contest's, not ours)
  env AMQP_URL: the RabbitMQ to use (default amqp://guest:guest@127.0.0.1:5672)
  env PAYD_LOCAL_PG_FLAGS: more PostgreSQL flags, for an investigation (not the profile's)
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CGROUP = "/sys/fs/cgroup"


def log(message):
    print(f"[run] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_bytes(text):
    """Compose's memory notation (350M, 1G, 512m, 1048576) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)[bB]?", str(text).strip())
    if not match:
        raise ValueError(f"memory limit {text!r}")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def limits(service):
    """(cpus, memory bytes) of a compose service's deploy.resources.limits, or Nones."""
    found = (service.get("deploy") or {}).get("resources", {}).get("limits", {})
    cpus = float(found["cpus"]) if "cpus" in found else None
    memory = memory_bytes(found["memory"]) if "memory" in found else None
    return cpus, memory


def order(services):
    """Service names in dependency order (depends_on first)."""
    done, result = set(), []

    def visit(name, path=()):
        if name in done:
            return
        if name in path:
            raise SystemExit(f"a dependency cycle through {name}")
        depends = services[name].get("depends_on") or {}
        for dependency in depends if isinstance(depends, (list, dict)) else []:
            visit(dependency, path + (name,))
        done.add(name)
        result.append(name)

    for name in services:
        visit(name)
    return result


class Group:
    """A service's cgroup-v1 groups (cpu and memory), created with its limits."""

    def __init__(self, name, cpus, memory, enforce_memory):
        self.name, self.cpus, self.memory = name, cpus, memory
        self.dirs = []
        if cpus is not None:
            cpu = os.path.join(CGROUP, "cpu", name)
            os.makedirs(cpu, exist_ok=True)
            self.write(cpu, "cpu.cfs_period_us", 100_000)
            self.write(cpu, "cpu.cfs_quota_us", int(cpus * 100_000))
            self.dirs.append(cpu)
            # CPU time used, for the report (a hierarchy of its own on our machines).
            usage = os.path.join(CGROUP, "cpuacct", name)
            if os.path.isdir(os.path.dirname(usage)) and usage != cpu:
                os.makedirs(usage, exist_ok=True)
                self.dirs.append(usage)
        self.started = time.monotonic()
        if memory is not None:
            mem = os.path.join(CGROUP, "memory", name)
            os.makedirs(mem, exist_ok=True)
            if enforce_memory:
                self.write(mem, "memory.limit_in_bytes", memory)
            self.dirs.append(mem)

    @staticmethod
    def write(directory, file, value):
        with open(os.path.join(directory, file), "w") as f:
            f.write(str(value))

    def join(self):
        """Moves the calling process into the groups (a child, before its exec)."""
        for directory in self.dirs:
            self.write(directory, "cgroup.procs", os.getpid())

    def read(self, controller, file):
        path = os.path.join(CGROUP, controller, self.name, file)
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    def in_use_bytes(self):
        """Memory the group cannot give back: anonymous pages and shared memory (PostgreSQL's
        buffers), not the page cache the kernel reclaims at the limit."""
        stat = dict(line.split() for line in self.read("memory", "memory.stat").splitlines() if line)
        return int(stat.get("total_rss", 0)) + int(stat.get("total_shmem", 0))

    def pids(self):
        for directory in self.dirs:
            with open(os.path.join(directory, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        return []

    def report(self):
        stat = dict(line.split() for line in self.read("cpu", "cpu.stat").splitlines() if line)
        peak = self.read("memory", "memory.max_usage_in_bytes").strip()
        oom = dict(line.split() for line in self.read("memory", "memory.oom_control").splitlines() if line)
        used_ns = self.read("cpuacct", "cpuacct.usage").strip()
        elapsed_s = time.monotonic() - self.started
        return {
            "cpu_used": int(used_ns) / 1e9 / elapsed_s if used_ns else None,
            "throttled": f"{stat.get('nr_throttled', '-')}/{stat.get('nr_periods', '-')}",
            "peak_bytes": int(peak) if peak else None,
            "oom_kills": int(oom.get("oom_kill", 0)),
        }

    def remove(self):
        for directory in self.dirs:
            # Anything left (a process that outlived its service) goes back to the root.
            root = os.path.dirname(directory)
            for pid in open(os.path.join(directory, "cgroup.procs")).read().split():
                try:
                    self.write(root, "cgroup.procs", pid)
                except OSError:
                    pass
            try:
                os.rmdir(directory)
            except OSError as error:
                log(f"could not remove {directory}: {error}")


def wait_until(check, what, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not become ready in {timeout_s} s")


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def tcp_ok(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Runner:
    def __init__(self, profile, args):
        self.profile = profile
        path = os.path.join(ROOT, "deploy", "compose", profile, "compose.yaml")
        self.compose_dir = os.path.dirname(path)
        with open(path) as f:
            self.compose = yaml.safe_load(f)
        self.services = {k: v for k, v in self.compose["services"].items()}
        self.args = args
        self.work = tempfile.mkdtemp(prefix=f"payd-local-{profile}-")
        self.procs = {}  # name -> Popen
        self.groups = {}  # name -> Group
        self.extra = []  # processes outside the profile (the contest's processors)
        self.cleanups = []
        self.ports = {}  # (service, container port) -> local port
        for name, service in self.services.items():
            for exposed in service.get("expose", []):
                self.ports[(name, int(exposed))] = free_port()
        for name, service in self.services.items():
            for published in service.get("ports", []):
                host, container = (int(p) for p in str(published).split(":")[-2:])
                if name == "nginx" and args.port:
                    host = args.port
                self.ports[(name, container)] = host
        self.hosts = {}  # an outside host:port -> a local host:port
        self.amqp_url = None

    # Mapping the compose network onto 127.0.0.1.
    def rewrite(self, text, own=None):
        for (name, port), local in sorted(self.ports.items(), key=lambda item: -len(item[0][0])):
            text = re.sub(rf"(?<![\w.-]){re.escape(name)}:{port}(?!\d)", f"127.0.0.1:{local}", text)
        for outside, inside in self.hosts.items():
            text = text.replace(outside, inside)
        if own is not None:
            text = re.sub(r"0\.0\.0\.0:(\d+)", lambda m: f"127.0.0.1:{self.ports[(own, int(m.group(1)))]}", text)
        return text

    def mounted(self, service, target):
        """The local file a service mounts at `target` (a bind mount of the compose file)."""
        for volume in service.get("volumes", []):
            source, mount = volume.split(":")[:2]
            if mount == target:
                return os.path.normpath(os.path.join(self.compose_dir, source))
        raise SystemExit(f"no volume mounted at {target}")

    def spawn(self, name, argv, env=None, user=None, cwd=None):
        cpus, memory = limits(self.services[name])
        group = Group(f"payd-{self.profile}-{name}", cpus, memory, not self.args.no_memory_limit)
        self.groups[name] = group
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
        out = open(os.path.join(self.work, f"{name}.log"), "w")
        self.procs[name] = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
            cwd=cwd or self.work, preexec_fn=group.join, start_new_session=True)
        log(f"{name}: pid {self.procs[name].pid}, {' '.join(argv[:3])} …")

    def start_processors(self):
        """The contest's processors: the given URLs, or two simulators outside any quota."""
        for role in ("default", "fallback"):
            outside = f"payment-processor-{role}:8080"
            url = os.environ.get(f"PROCESSOR_{role.upper()}_URL")
            if not url:
                port = free_port()
                out = open(os.path.join(self.work, f"processor-{role}.log"), "w")
                self.extra.append(subprocess.Popen(
                    [self.args.payd, "processor-sim", "--role", role, "--listen", f"127.0.0.1:{port}"],
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
                wait_until(lambda: tcp_ok(port), f"processor-sim {role}")
                url = f"http://127.0.0.1:{port}"
            self.hosts[f"http://{outside}"] = url

    def start(self, name):
        service = self.services[name]
        image = service.get("image", "")
        if image.startswith("payd"):
            env = {k: self.rewrite(str(v), own=name) for k, v in (service.get("environment") or {}).items()}
            for key, value in env.items():
                if value.startswith("amqp://"):
                    env[key] = self.amqp()
            argv = [self.rewrite(str(a), own=name) for a in service.get("command", [])]
            self.spawn(name, [self.args.payd, *argv], env=env)
            listen = env.get("PAYD_LISTEN", "")
            port = int(listen.rsplit(":", 1)[1]) if listen else None
            if argv and argv[0] == "processor-sim":
                port = int(argv[argv.index("--listen") + 1].rsplit(":", 1)[1])
                wait_until(lambda: tcp_ok(port), name)
            else:
                wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ready"), name)
        elif image.startswith("postgres"):
            self.start_postgres(name, service)
        elif image.startswith("nginx"):
            conf = self.rewrite(open(self.mounted(service, "/etc/nginx/nginx.conf")).read())
            conf = re.sub(r"listen\s+(\d+)", lambda m: f"listen 127.0.0.1:{self.ports[(name, int(m.group(1)))]}", conf)
            prefix = os.path.join(self.work, "nginx")
            os.makedirs(prefix, exist_ok=True)
            with open(os.path.join(prefix, "nginx.conf"), "w") as f:
                f.write(conf)
            self.spawn(name, ["nginx", "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"),
                              "-g", f"daemon off; pid {prefix}/nginx.pid;"])
            port = self.ports[(name, 9999)]
            wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/ready"), name)
        elif image.startswith("redis"):
            port = self.ports[(name, 6379)]
            argv = [a for a in service.get("command", ["redis-server"])]
            self.spawn(name, [*argv, "--port", str(port), "--bind", "127.0.0.1", "--dir", self.work])
            wait_until(lambda: tcp_ok(port), name)
        elif image.startswith("rabbitmq"):
            log(f"{name}: the machine's RabbitMQ, vhost of this run (not capped)")
        elif image.startswith("prom/prometheus"):
            source = self.mounted(service, "/etc/prometheus/prometheus.yml")
            prefix = os.path.join(self.work, "prometheus")
            os.makedirs(prefix, exist_ok=True)
            with open(os.path.join(prefix, "prometheus.yml"), "w") as f:
                f.write(self.rewrite(open(source).read()))
            shutil.copy(self.mounted(service, "/etc/prometheus/alerts.yml"), prefix)
            port = self.ports[(name, 9090)]
            self.spawn(name, ["prometheus", f"--config.file={prefix}/prometheus.yml",
                              f"--storage.tsdb.path={prefix}/data", f"--web.listen-address=127.0.0.1:{port}"])
            wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/-/ready"), name)
        elif image.startswith("grafana"):
            log(f"{name}: skipped (Grafana is not packaged by Debian; the dashboard is checked offline)")
        else:
            raise SystemExit(f"{name}: no local recipe for image {image}")

    def amqp(self):
        """The run's RabbitMQ URL: a vhost of its own on the machine's node."""
        if self.amqp_url is None:
            vhost = f"payd-local-{os.getpid()}"
            subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
            subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True)
            self.cleanups.append(lambda: subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost]))
            base = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
            self.amqp_url = f"{base}/{vhost}"
        return self.amqp_url

    def start_postgres(self, name, service):
        """A private cluster, initdb'd for the run, with the service's `-c` settings."""
        bindir = sorted(p for p in os.listdir("/usr/lib/postgresql"))[-1]
        bindir = f"/usr/lib/postgresql/{bindir}/bin"
        data = os.path.join(self.work, "pgdata")
        os.makedirs(data)
        env = service.get("environment") or {}
        user, database = env.get("POSTGRES_USER", "postgres"), env.get("POSTGRES_DB", "postgres")
        os.chmod(self.work, 0o755)
        shutil.chown(data, "postgres", "postgres")
        subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                        f"{bindir}/initdb", "-D", data, "-U", user, "--auth=trust", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL)
        port = self.ports[(name, 5432)]
        command = [str(a) for a in service.get("command", ["postgres"])][1:]
        # For an investigation only (e.g. "-c shared_preload_libraries=pg_stat_statements").
        command += os.environ.get("PAYD_LOCAL_PG_FLAGS", "").split()
        self.spawn(name, [f"{bindir}/postgres", "-D", data, "-p", str(port), "-k", data,
                          "-c", "listen_addresses=127.0.0.1", *command], user="postgres", cwd=data)
        wait_until(lambda: subprocess.run([f"{bindir}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0, name)
        subprocess.run([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user, database], check=True)

    def state(self):
        services = {}
        for name in self.services:
            ports = {str(c): l for (n, c), l in self.ports.items() if n == name}
            group = self.groups.get(name)
            services[name] = {"ports": ports, "pids": group.pids() if group else []}
        return {"profile": self.profile, "url": f"http://127.0.0.1:{self.ports[('nginx', 9999)]}",
                "work": self.work, "services": services}

    def report(self):
        rows, total_cpus, total_used, total_limit, total_peak = [], 0.0, 0.0, 0, 0
        for name in self.services:
            group = self.groups.get(name)
            if group is None:
                rows.append((name, "-", "-", "-", "-", "-", "-", "not run here"))
                continue
            seen = group.report()
            cpus, memory = group.cpus, group.memory
            total_cpus += cpus or 0
            total_used += seen["cpu_used"] or 0
            total_limit += memory or 0
            peak = seen["peak_bytes"] or 0
            total_peak += peak
            in_use = self.peaks.get(name, 0)
            verdict = "ok"
            if memory and peak >= memory:
                verdict = "limit reached: page cache reclaimed"
            if memory and in_use > memory:
                verdict = "over"
            if seen["oom_kills"]:
                verdict = f"{seen['oom_kills']} OOM kill(s)"
            used = f"{seen['cpu_used']:.3f}" if seen["cpu_used"] is not None else "-"
            rows.append((name, f"{cpus:g}" if cpus else "-", used, seen["throttled"],
                         f"{memory / 2**20:.0f} MB" if memory else "-", f"{peak / 2**20:.1f} MB",
                         f"{in_use / 2**20:.1f} MB", verdict))
        rows.append(("total", f"{total_cpus:g}", f"{total_used:.3f}", "", f"{total_limit / 2**20:.0f} MB",
                     f"{total_peak / 2**20:.1f} MB", "", ""))
        header = ("service", "cpus", "cpu used (mean)", "throttled/periods", "memory limit", "peak (cgroup)", "peak in use", "")
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        print(f"\nprofile {self.profile}: limits and peaks ({time.strftime('%Y-%m-%d %H:%MZ', time.gmtime())})")
        for row in [header, *rows]:
            print("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))
        print("  cpu used: CPU seconds per second from start to stop; throttled: 100 ms periods in which the"
              " quota ran out (the process then waits for the next period)")
        print("  peak (cgroup): memory.max_usage_in_bytes, what Docker's limit counts (page cache too, which the"
              " kernel reclaims at the limit); peak in use: anonymous + shared memory, sampled every 0.5 s")

    def run(self):
        names = order(self.services)
        if self.profile == "contest":
            self.start_processors()
        for name in names:
            self.start(name)
        state = self.state()
        if self.args.state:
            with open(self.args.state + ".tmp", "w") as f:
                json.dump(state, f)
            os.replace(self.args.state + ".tmp", self.args.state)
        log(f"ready: {state['url']} (state: {self.args.state or '-'}; logs: {self.work})")
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        self.peaks = {}
        while not stop:
            for name, group in self.groups.items():
                self.peaks[name] = max(self.peaks.get(name, 0), group.in_use_bytes())
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log(f"{name} exited with {proc.returncode}; its log: {self.work}/{name}.log")
                    stop.append(1)
            time.sleep(0.5)

    def stop(self):
        self.peaks = getattr(self, "peaks", {})
        # In reverse start order, each given its time: the APIs and workers drain their
        # writers into PostgreSQL before it goes.
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if name == "postgres" else signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in 20 s: killed")
                proc.kill()
        for proc in self.extra:
            proc.terminate()
            proc.wait()
        self.report()
        for group in self.groups.values():
            group.remove()
        for cleanup in self.cleanups:
            cleanup()
        if self.args.logs:
            os.makedirs(self.args.logs, exist_ok=True)
            for name in os.listdir(self.work):
                if name.endswith(".log"):
                    shutil.copy(os.path.join(self.work, name), self.args.logs)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("profile", choices=["contest", "full"])
    parser.add_argument("--port", type=int, help="the load balancer's local port (default: the published one, 9999)")
    parser.add_argument("--state", help="where to write the ports and pids once ready")
    parser.add_argument("--payd", default=os.environ.get("PAYD_BIN", os.path.join(ROOT, "target", "release", "payd")))
    parser.add_argument("--no-memory-limit", action="store_true", help="record the peaks, do not enforce the limits")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    parser.add_argument("--logs", help="copy the services' logs into this directory at the end")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run.py needs root: it creates cgroups and a PostgreSQL cluster owned by postgres")
    runner = Runner(args.profile, args)
    try:
        runner.run()
    finally:
        runner.stop()


if __name__ == "__main__":
    main()
