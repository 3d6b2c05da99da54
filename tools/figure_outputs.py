"""Run notebooks top to bottom and keep the outputs of their figure cells only: the figures a reader sees on GitHub
and on the documentation site. Every other cell is left without outputs, and the notebook as `nbdev_clean` leaves it.

    .venv/bin/python tools/figure_outputs.py nbs/11_masking.ipynb [more notebooks]

Cells marked `#| eval: false` run too: they draw from `make reproduce`'s runs (results/runs/), which `nbdev_test`
cannot have, so run this after `make reproduce`; a missing run stops it with the cell's error. A figure over 100 KB is
refused: draw it smaller. Then `make check` and commit.
"""
from __future__ import annotations
import argparse, base64, subprocess, sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

MAX_PNG = 100 * 1024   # bytes: small enough to read on GitHub and to keep the repository light


def is_figure(cell) -> bool:
    return cell.cell_type == 'code' and any('image/png' in o.get('data', {}) for o in cell.get('outputs', []))


def render(path:Path, timeout:int=900) -> int:
    "Execute `path` in its folder; keep the figure cells' outputs (warnings aside); returns how many figures it kept."
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name='python3', record_timing=False,
                   resources={'metadata': {'path': str(path.parent)}}).execute()
    kept = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code': continue
        cell.execution_count = None
        if not is_figure(cell):
            cell.outputs = []
            continue
        cell.outputs = [o for o in cell.outputs if o.get('name') != 'stderr']   # warnings are no part of the figure
        for o in cell.outputs:
            if 'execution_count' in o: o['execution_count'] = None
            if 'image/png' in o.get('data', {}):
                size = len(base64.b64decode(o['data']['image/png']))
                if size > MAX_PNG: sys.exit(f'figure_outputs: {path}, cell {i}: a figure of {size // 1024} KB (at most '
                                            f'{MAX_PNG // 1024} KB): draw it smaller (figsize or dpi); nothing was written')
                kept += 1
    nbformat.write(nb, path)
    subprocess.run([str(Path(sys.executable).parent / 'nbdev_clean'), '--fname', str(path)], check=True)
    return kept


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--timeout', type=int, default=900, help='seconds a cell may run (default 900)')
    args = ap.parse_args(argv)
    for p in args.notebooks:
        if not p.exists(): sys.exit(f'figure_outputs: {p}: no such notebook')
        print(f'{p}: {render(p, args.timeout)} figure(s) kept')


if __name__ == '__main__':
    main()
