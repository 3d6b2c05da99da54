"""Render nbs/index.ipynb to README.md (what `nbdev_readme` does, without needing Quarto).

Markdown cells are copied; code cells appear as ```python blocks followed by their saved text
outputs; cells marked `#| hide` are left out and `#|` directive lines are stripped."""
import json
from pathlib import Path

root = Path(__file__).resolve().parents[1]
nb = json.loads((root / 'nbs' / 'index.ipynb').read_text(encoding='utf-8'))

def directives(src):
    return [l[3:].strip() for l in src.splitlines() if l.startswith('#|')]

def text_outputs(cell):
    for out in cell.get('outputs', []):
        if out['output_type'] == 'stream': yield ''.join(out['text'])
        elif 'data' in out and 'text/plain' in out['data']: yield ''.join(out['data']['text/plain'])

parts = ['<!-- Generated from nbs/index.ipynb by `make readme`: edit the notebook, not this file. -->']
for cell in nb['cells']:
    src = ''.join(cell['source'])
    if cell['cell_type'] == 'markdown':
        parts.append(src.strip())
        continue
    if any(d.split()[0] in ('hide', 'exec_doc') for d in directives(src) if d): continue
    code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
    if code: parts.append(f'```python\n{code}\n```')
    for text in text_outputs(cell): parts.append(f'```\n{text.rstrip()}\n```')

readme = '\n\n'.join(p for p in parts if p) + '\n'
path = root / 'README.md'
if not path.exists() or path.read_text(encoding='utf-8') != readme:
    path.write_text(readme, encoding='utf-8')
    print('README.md written')
