"""What a reader sees in the component notebooks: each opens with the paper's equations and stores at least one small
figure; and `tools/figure_outputs.py`, which draws them, keeps the figures and nothing else."""
import base64, importlib.util, json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ('10_embedders', '11_masking', '12_model', '13_losses', '15_objectives', '20_retrieval', '30_train')
spec = importlib.util.spec_from_file_location('figure_outputs', ROOT / 'tools' / 'figure_outputs.py')
tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)   # the tool that draws the stored figures


def source(cell) -> str: return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


def pngs(nb) -> list[bytes]:
    return [base64.b64decode(o['data']['image/png']) for c in nb['cells'] if c['cell_type'] == 'code'
            for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]


@pytest.mark.parametrize('name', COMPONENTS)
def test_a_component_notebook_opens_with_the_papers_equations_and_stores_a_small_figure(name):
    nb = json.loads((ROOT / 'nbs' / f'{name}.ipynb').read_text())
    cells = nb['cells']
    title = next(i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and source(c).startswith('# '))
    opening = []                                           # the markdown between the title and the first code after it
    for c in cells[title + 1:]:
        if c['cell_type'] == 'code' and not source(c).startswith('#| hide'): break
        if c['cell_type'] == 'markdown': opening.append(source(c))
    text = '\n'.join(opening)
    assert '$$' in text and text.count('$$') % 2 == 0, f'{name}: no displayed equation (or an unclosed one) before its first code cell'
    assert '2405.07202' in text, f'{name}: the opening does not name the paper'
    figures = pngs(nb)
    assert figures, f'{name}: no stored figure'
    assert all(len(p) <= tool.MAX_PNG for p in figures), f'{name}: a figure of {max(map(len, figures)) // 1024} KB'


def test_figure_outputs_keeps_the_figures_and_drops_every_other_output(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print('a test prints this')\nx = 3"),
        nbformat.v4.new_code_cell("#| eval: false\nimport sys, matplotlib.pyplot as plt\nprint('a warning', file=sys.stderr)\n"
                                  "plt.figure(figsize=(2, 2)); plt.plot([0, 1], [0, x]); plt.show()\nprint('caption')"),
        nbformat.v4.new_code_cell("x * 2")])
    path = tmp_path / 'figures.ipynb'
    nbformat.write(nb, path)
    assert tool.render(path, timeout=120) == 1                           # the eval: false cell ran: nbdev_test skips it, this does not
    out = nbformat.read(path, as_version=4)
    test_cell, figure_cell, value_cell = out.cells
    assert test_cell.outputs == [] and value_cell.outputs == []          # what is not a figure is left out
    kinds = [o.get('name') or next(iter(o.get('data', {})), '') for o in figure_cell.outputs]
    assert kinds == ['image/png', 'stdout'], kinds                       # the figure and its caption, not the warning
    assert all(c.execution_count is None for c in out.cells)
    first = path.read_bytes()
    tool.render(path, timeout=120)
    assert path.read_bytes() == first                                    # the same figure, byte for byte


def test_figure_outputs_refuses_a_large_figure_and_names_a_missing_notebook(tmp_path):
    path = tmp_path / 'big.ipynb'
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import numpy as np, matplotlib.pyplot as plt\nplt.figure(figsize=(12, 12), dpi=100)\n"
        "plt.imshow(np.random.default_rng(0).random((600, 600, 3))); plt.show()")]), path)
    before = path.read_bytes()
    with pytest.raises(SystemExit, match='KB .at most 100 KB.: draw it smaller'):
        tool.render(path, timeout=120)
    assert path.read_bytes() == before                                   # nothing written
    with pytest.raises(SystemExit, match='nope.ipynb: no such notebook'):
        tool.main([str(tmp_path / 'nope.ipynb')])
