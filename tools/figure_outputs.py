"""Run notebooks top to bottom and keep the outputs of their figure cells only: the figures a reader sees on GitHub
and on the documentation site. Every other cell is left without outputs, as `nbdev_clean` expects.

    .venv/bin/python tools/figure_outputs.py nbs/11_masking.ipynb [more notebooks]

Cells marked `#| eval: false` run too: they draw from `make reproduce`'s runs (results/runs/), which `nbdev_test`
cannot have, so run this after `make reproduce`. Then `make check` (nbdev_clean) and commit.
"""
from __future__ import annotations
import argparse, json, sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def is_figure(cell) -> bool:
    return cell.cell_type == 'code' and any('image/png' in o.get('data', {}) for o in cell.get('outputs', []))


def render(path:Path, timeout:int) -> int:
    "Execute `path` in its folder; keep the figure cells' outputs; returns how many figures it kept."
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name='python3', record_timing=False, resources={'metadata': {'path': str(path.parent)}}).execute()
    kept = 0
    for cell in nb.cells:
        if cell.cell_type != 'code': continue
        cell.execution_count = None
        if is_figure(cell):
            kept += sum('image/png' in o.get('data', {}) for o in cell.outputs)
            cell.outputs = [o for o in cell.outputs if o.get('name') != 'stderr']   # warnings are no part of the figure
            for o in cell.outputs:
                if 'execution_count' in o: o['execution_count'] = None
        else: cell.outputs = []
    nbformat.write(nb, path)
    return kept


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--timeout', type=int, default=900, help='seconds a cell may run')
    args = ap.parse_args(argv)
    for p in args.notebooks:
        if not p.exists(): sys.exit(f'figure_outputs: {p}: no such notebook')
        print(f'{p}: {render(p, args.timeout)} figure(s) kept')


if __name__ == '__main__':
    main()
