#!/usr/bin/env python3
"""Where a lossy e2e run spent its time, from reflex's debug log.

LOSSY_KEEP_LOGS=DIR cargo test --test e2e_lossy thirty -- --nocapture
python3 scripts/lossy_breakdown.py DIR/lossy.log

Prints the drain window, the SDK backoff delays, each operation's outcomes
and total time, and per message its start, end, handlings and slow calls.
"""
import json,sys,collections,datetime
def ts(s): return datetime.datetime.fromisoformat(s.replace('Z','+00:00')).timestamp()
ev=[]
for l in open(sys.argv[1]):
    try: e=json.loads(l)
    except: continue
    ev.append(e)
t0=None; tend=None
msgs=collections.defaultdict(lambda: {'first':None,'last':None,'calls':[],'handled':[]})
ops=collections.defaultdict(lambda: collections.Counter())
opt=collections.defaultdict(float)
delays=0.0; nd=0
for e in ev:
    t=ts(e['timestamp'])
    m=e.get('message','')
    if m=='Messages received.' and e.get('count',0)>0 and t0 is None: t0=t
    if m=='Message deleted.': tend=t
    if m.startswith('delaying for'):
        d=m.split()[-1]; nd+=1
        delays+= float(d[:-2])/1000 if d.endswith('ms') else float(d[:-2])/1e6 if d.endswith('µs') else float(d[:-1])
    sp=e.get('span') or {}
    mid=sp.get('sqs_message_id')
    if m=='AWS call finished.':
        key=(e['service'],e['operation'])
        ops[key][e['outcome']]+=1; opt[key]+=e['elapsed_ms']/1000
    if mid:
        r=msgs[mid]
        if r['first'] is None: r['first']=t
        r['last']=t
        if m=='AWS call finished.': r['calls'].append((e['operation'],e['outcome'],e['elapsed_ms']))
        if m=='Message handled.': r['handled'].append((e['disposition'],e['elapsed_ms']))
print(f"drain window (first receive -> last delete): {tend-t0:.1f}s")
print(f"SDK backoff delays: {nd} totalling {delays:.1f}s")
print("per operation: outcomes, total seconds")
for k,v in sorted(ops.items()): print(f"  {k[1]:28} {dict(v)} {opt[k]:.1f}s")
rows=[]
for mid,r in msgs.items():
    rows.append((r['first']-t0,r['last']-t0,mid,r))
rows.sort()
print("per message: start end (s from first receive) handles | slow calls (>300ms or failed)")
for s,e_,mid,r in rows:
    slow=[f"{o}:{oc}:{ms}" for o,oc,ms in r['calls'] if ms>300 or oc!='ok']
    print(f"  {s:6.1f} {e_:6.1f} {mid[:8]} {r['handled']} | {' '.join(slow)}")
