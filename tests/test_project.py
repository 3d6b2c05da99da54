"""The project's own machinery: make targets, the consistency check, nbdev_test failing when it should, the CLI."""
import json, os, re, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the .venv's bin: nbdev_* and vlsa live beside this python
ENV = {**os.environ, 'PATH': f'{BIN}{os.pathsep}{os.environ["PATH"]}'}


def run(cmd, cwd=ROOT, **kw):
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300, **kw)


def test_make_help_lists_every_target_with_its_line():
    targets = re.findall(r'^([a-z]+):', (ROOT / 'Makefile').read_text(), flags=re.M)
    out = run(['make', '--no-print-directory', 'help']).stdout
    for t in targets:
        assert re.search(rf'make {t}\s+\S', out), f'{t} missing from make help'


def test_install_is_up_to_date_after_install():
    # `make -q` exits 0 only when the target needs no work: a second install does nothing.
    assert run(['make', '-q', 'install']).returncode == 0


def test_install_without_the_disk_space_stops_at_once_and_says_so(tmp_path):
    # a fresh folder: no .venv yet, so the check runs; no disk has 10^6 GB free
    for f in ('Makefile', 'settings.ini', 'setup.py'): shutil.copy(ROOT / f, tmp_path / f)
    r = run(['make', 'install', 'INSTALL_GB=1000000'], cwd=tmp_path)
    assert r.returncode != 0 and f'make install: {tmp_path} has' in r.stderr and 'GB free' in r.stderr, r.stderr
    assert not (tmp_path / '.venv').exists()


def test_console_script_lists_subcommands_and_rejects_unknown():
    r = run(['vlsa', '--help'])
    assert r.returncode == 0 and 'config' in r.stdout and 'info' in r.stdout
    r = run(['vlsa', 'pretrian'])
    assert r.returncode == 2 and 'unknown command' in r.stderr
    r = run(['vlsa', 'config', 'base'])
    assert json.loads(r.stdout)['model']['encoder']['width'] == 768


def _notebook(path, code):
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': [], 'source': code}],
          'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))


def test_nbdev_test_fails_on_a_failing_assertion(tmp_path):
    good, bad = tmp_path / 'good.ipynb', tmp_path / 'bad.ipynb'
    _notebook(good, 'assert 1 + 1 == 2')
    _notebook(bad, 'assert 1 + 1 == 3, "arithmetic"')
    assert run(['nbdev_test', '--path', str(good)]).returncode == 0
    r = run(['nbdev_test', '--path', str(bad)])
    assert r.returncode != 0 and 'bad.ipynb' in r.stdout + r.stderr


@pytest.fixture
def repo_copy(tmp_path):
    "A throwaway git repository holding the notebooks, the package and the check."
    dst = tmp_path / 'repo'
    dst.mkdir()
    for name in ['settings.ini', 'README.md', '.gitignore', 'nbs', 'vlsa', 'tools']:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)
    shutil.rmtree(dst / 'vlsa' / '__pycache__', ignore_errors=True)
    for cmd in (['git', 'init', '-q'], ['git', 'add', '-A'],
                ['git', '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'copy']):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    return dst


def test_check_passes_on_a_clean_tree_and_fails_on_an_unexported_edit(repo_copy):
    r = run(['bash', 'tools/check_clean.sh'], cwd=repo_copy)
    assert r.returncode == 0, r.stdout + r.stderr
    nb_path = repo_copy / 'nbs' / '00_config.ipynb'
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb['cells'] if ''.join(c['source']).startswith('#| export\nMODALITIES'))
    cell['source'] = ''.join(cell['source']).replace("MODALITIES = ('video', 'audio', 'text')",
                                                     "MODALITIES = ('video', 'audio', 'text', 'depth')")
    nb_path.write_text(json.dumps(nb, indent=1) + '\n')
    r = run(['bash', 'tools/check_clean.sh'], cwd=repo_copy)
    assert r.returncode != 0
    assert 'vlsa/config.py' in r.stderr


def test_check_fails_on_an_unclean_notebook(repo_copy):
    nb_path = repo_copy / 'nbs' / '90_cli.ipynb'
    nb = json.loads(nb_path.read_text())
    code = next(c for c in nb['cells'] if c['cell_type'] == 'code')
    code['execution_count'], code['metadata'] = 12, {'collapsed': True}  # editor noise that nbdev_clean strips
    nb_path.write_text(json.dumps(nb, indent=1) + '\n')
    r = run(['bash', 'tools/check_clean.sh'], cwd=repo_copy)
    assert r.returncode != 0 and 'nbs/90_cli.ipynb' in r.stderr


def import_graph() -> dict[str, set[str]]:
    "module -> the vlsa modules it imports, anywhere in its source (a lazy import inside a function counts too)."
    import ast
    mods = {p.stem: p for p in (ROOT / 'vlsa').glob('*.py') if p.stem not in ('__init__', '_modidx')}
    graph = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module: names = [node.module]
            elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('vlsa.'): names = [node.module[5:]]
            elif isinstance(node, ast.ImportFrom) and node.module == 'vlsa': names = [a.name for a in node.names]
            elif isinstance(node, ast.Import): names = [a.name[5:] for a in node.names if a.name.startswith('vlsa.')]
            else: continue
            graph[m] |= {n.split('.')[0] for n in names if n.split('.')[0] in mods and n.split('.')[0] != m}
    return graph


def test_the_package_has_no_import_cycle():
    graph, done, path = import_graph(), set(), []
    def visit(m):   # depth-first; a module met again on the current path closes a cycle
        if m in path: pytest.fail('import cycle: ' + ' -> '.join(path[path.index(m):] + [m]))
        if m in done: return
        path.append(m)
        for n in sorted(graph[m]): visit(n)
        path.pop(); done.add(m)
    for m in sorted(graph): visit(m)
    assert graph['model'] >= {'pretrained'} and 'hub' not in graph['model']   # the mixin, not a trailing import
