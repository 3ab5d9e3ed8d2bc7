"""Preliminary: on the test texts whose 4,000-sample KernelSHAP reference (seed 142)
is already in the distill teacher cache, mean Spearman (non-special pieces) of
(a) the student, (b) the 500-sample teacher (seed 42), (c) the second 500-sample
run (seed 43), each against the reference; bootstrap 95% CIs."""
import json, sys, random, subprocess
from scipy.stats import spearmanr
cache, student, binary = sys.argv[1:4]
runs = {}
for line in open(cache):
    r = json.loads(line)
    if 'seed' in r:
        runs.setdefault(r['text'], {})[(r['seed'], r['samples'])] = r['scores']
texts = [t for t, d in runs.items() if (142, 4000) in d and (43, 500) in d and (42, 500) in d]
inp = '/tmp/ks_ref_texts.txt'
open(inp, 'w').write('\n'.join(texts) + '\n')
out = subprocess.run([binary, 'explain', '--expnet', student, '--methods', 'expnet', '--input', inp], capture_output=True, text=True, check=True).stdout
stud = {}
for line in out.splitlines():
    v = json.loads(line)
    stud[v['text']] = v['explanations']['expnet']['scores']
def mean_ci(xs):
    random.seed(0)
    b = sorted(sum(random.choices(xs, k=len(xs))) / len(xs) for _ in range(2000))
    return f"{sum(xs)/len(xs):.3f} [{b[50]:.3f}, {b[1949]:.3f}]"
res = {'student': [], 'teacher seed 42': [], 'teacher seed 43': []}
for t in texts:
    ref = runs[t][(142, 4000)][1:-1]
    if len(ref) < 2 or t not in stud or len(stud[t]) != len(runs[t][(142, 4000)]): continue
    for name, s in [('student', stud[t]), ('teacher seed 42', runs[t][(42, 500)]), ('teacher seed 43', runs[t][(43, 500)])]:
        r = spearmanr(s[1:-1], ref).correlation
        res[name].append(r if r == r else 0.0)
print(f"texts with a reference: {len(res['student'])} of 300")
for k, v in res.items():
    print(f"  {k} vs 4,000-sample reference: {mean_ci(v)}")
d = [a - b for a, b in zip(res['student'], res['teacher seed 43'])]
print(f"  student minus seed 43 (paired): {mean_ci(d)}")
