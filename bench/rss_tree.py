"""Peak RSS of a command's own process and of its largest descendant (sampled every 20 ms).

    .venv/bin/python bench/rss_tree.py CMD ARGS...

Prints one dict: {"parent": {VmRSS, RssAnon, RssFile (MB), cmd}, "child": {...}}, plus the exit
status. Used for bench/results/arrow_pool.json (the Arrow memory pool of llmpipe's processes)."""
import subprocess, sys, time, os
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
peak = {}
def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                pp = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(pp, []).append(int(d))
            except OSError:
                pass
    out, todo = [], [root]
    while todo:
        x = todo.pop(); out.append(x); todo += kids.get(x, [])
    return out
while p.poll() is None:
    for pid in tree(p.pid):
        try:
            st = {l.split(":")[0]: int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith(("RssAnon", "RssFile", "VmRSS"))}
            name = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:60]
            role = "parent" if pid == p.pid else "child"
            cur = peak.get(role, {"VmRSS": 0})
            if st.get("VmRSS", 0) > cur["VmRSS"]:
                peak[role] = {**st, "cmd": name}
        except OSError:
            pass
    time.sleep(0.02)
err = p.stderr.read().decode()[-300:]
print({r: {k: (v // 1024 if isinstance(v, int) else v) for k, v in d.items()} for r, d in peak.items()}, "rc", p.returncode, err if p.returncode else "")
