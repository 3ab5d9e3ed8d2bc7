"""Print the sentences of an SST trees file, one per line, as expnet's loader
spells them (`\\/` and `\\*` unescaped), first occurrence of each only.
Neutral sentences are kept unless --binary (distillation needs no labels).

  python3 scripts/research/sst_sentences.py ../shared/data/sst/train.txt > TEXTS
"""
import argparse, re

ap = argparse.ArgumentParser()
ap.add_argument('trees')
ap.add_argument('--binary', action='store_true', help='drop sentences whose root label is neutral (2)')
args = ap.parse_args()
seen = set()
for line in open(args.trees):
    if args.binary and int(line[1]) == 2:
        continue
    text = ' '.join(re.findall(r'\(\d ([^()]+)\)', line)).replace('\\/', '/').replace('\\*', '*')
    if text not in seen:
        seen.add(text)
        print(text)
