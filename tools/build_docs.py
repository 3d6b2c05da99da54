"""Build the documentation site from the notebooks, the results and the data cards (`make docs`; `make docs-check` opens it).

nbdev's own site needs Quarto, and the only Quarto on PyPI (`quarto-cli`) is a source package that downloads the
binary from GitHub when it is built: on a machine that reaches only the package registries it cannot be installed.
So the site is rendered here with nbconvert (already in the stack) and MathJax (from npm, by `make docs` only):
  index.html            the README's notebook (nbs/index.ipynb)
  <notebook>.html       every notebook of nbs/ and nbs/experiments/, with its stored outputs (figures inline)
  results/index.html    results/README.md with its figures; data_cards/<card>.html each data card
  api.html              every exported name: signature, docstring and the notebook that defines it (nbdev's index)
Links to files of the repository that are not pages go to the repository on GitHub (settings.ini's git_url)."""
from __future__ import annotations
import argparse, configparser, html, importlib, inspect, posixpath, re, shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATHJAX_FILES = ('tex-chtml.js', 'input/tex/extensions', 'output/chtml/fonts/woff-v2')   # what tex-chtml.js loads

CSS = """
body { margin: 0; font: 15px/1.55 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d2330; display: flex; }
nav { width: 250px; flex: none; height: 100vh; overflow-y: auto; position: sticky; top: 0; background: #f4f5f8;
      border-right: 1px solid #dde; padding: 14px 12px; box-sizing: border-box; font-size: 13.5px; }
nav h1 { font-size: 20px; margin: 0 0 10px; } nav h1 a { color: inherit; text-decoration: none; }
nav h2 { font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: #667; margin: 16px 0 4px; }
nav a { display: block; color: #234; text-decoration: none; padding: 1px 4px; border-radius: 3px; }
nav a:hover, nav a.here { background: #dfe3ee; }
main { max-width: 980px; padding: 18px 36px 60px; min-width: 0; flex: 1; }
pre, code { font: 12.5px/1.45 ui-monospace, 'DejaVu Sans Mono', monospace; }
pre { background: #f6f7f9; border: 1px solid #e3e5ea; border-radius: 4px; padding: 8px 10px; overflow-x: auto; }
.jp-OutputArea pre { background: #fff; border-style: dashed; }
img { max-width: 100%; height: auto; }
mjx-container[display="true"] { overflow-x: auto; overflow-y: hidden; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13px; } th, td { border: 1px solid #d6d9e0; padding: 3px 7px; }
th { background: #f1f2f6; } blockquote { color: #445; border-left: 3px solid #c8cde0; margin: 0 0 0 2px; padding-left: 12px; }
.api-item { border-top: 1px solid #e3e5ea; padding-top: 6px; } .api-item code.sig { font-weight: 600; }
.source { font-size: 12px; color: #667; }
.anchor-link { visibility: hidden; text-decoration: none; margin-left: 6px; font-size: .7em; color: #99a; }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link { visibility: visible; }
"""

def settings() -> configparser.SectionProxy:
    c = configparser.ConfigParser(); c.read(ROOT / 'settings.ini'); return c['DEFAULT']

# ---- the pages: (site path, source, section) ----------------------------------------------------------------------
def pages() -> list[tuple[str, Path, str]]:
    nbs = ROOT / 'nbs'
    out = [('index.html', nbs / 'index.ipynb', 'Start'), ('92_paper.html', nbs / '92_paper.ipynb', 'Start'),
           ('results/index.html', ROOT / 'results' / 'README.md', 'Start')]   # the paper, then what make reproduce found
    out += [(f'data_cards/{p.stem}.html', p, 'Start') for p in sorted((ROOT / 'data_cards').glob('*.md'))]
    out += [(f'{p.stem}.html', p, 'Components') for p in sorted(nbs.glob('[0-9]*.ipynb')) if p.stem != '92_paper']
    out += [(f'experiments/{p.stem}.html', p, 'Experiments') for p in sorted((nbs / 'experiments').glob('*.ipynb'))]
    return [(site, src, section) for site, src, section in out if src.exists()]

def title_of(text:str, fallback:str) -> str:
    m = re.search(r'^# (.+)$', text, re.M)
    return re.sub(r'[`*]', '', m.group(1)).strip() if m else fallback

# ---- notebooks and markdown to HTML ---------------------------------------------------------------------------------
def reader_notebook(path:Path):
    "The notebook as a reader sees it: no hidden cells, no nbdev directives, no export boilerplate."
    import nbformat
    nb = nbformat.read(path, as_version=4)
    keep = []
    for c in nb.cells:
        src = c.source
        if c.cell_type == 'code':
            if re.search(r'^#\|\s*(hide|default_exp)\b', src, re.M) or 'nbdev.nbdev_export()' in src: continue
            c.source = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip('\n')
            if not c.source and not c.get('outputs'): continue
        keep.append(c)
    title = next((i for i, c in enumerate(keep) if c.cell_type == 'markdown' and c.source.startswith('# ')), 0)
    nb.cells = keep[title:title + 1] + keep[:title] + keep[title + 1:]   # the title first, then the imports
    return nb

def notebook_html(path:Path) -> tuple[str, str]:
    from nbconvert import HTMLExporter
    nb = reader_notebook(path)
    exporter = HTMLExporter(template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    first = next((c.source for c in nb.cells if c.cell_type == 'markdown'), '')
    return title_of(first, path.stem), body

def markdown_html(path:Path) -> tuple[str, str]:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune   # keeps $...$ for MathJax, as notebooks do
    text = path.read_text()
    text = re.sub(r'<!--.*?-->', '', text, flags=re.S)
    return title_of(text, path.stem), markdown2html_mistune(text)

# ---- the API reference, from nbdev's index of exported names ---------------------------------------------------------
def api_html(page_of_doc:dict[str, str]) -> str:
    "`page_of_doc`: nbdev's page name of a notebook (its name without the number, as `_modidx` gives it) -> our page."
    sys.path.insert(0, str(ROOT))
    from vlsa._modidx import d
    parts = ['<h1>API reference</h1><p>Every name the package exports, with its signature and docstring, and the notebook '
             'that defines, explains and tests it.</p>']
    for module, syms in sorted(d['syms'].items()):
        mod = importlib.import_module(module)
        parts.append(f'<h2 id="{module}">{module}</h2>')
        if mod.__doc__: parts.append(f'<p>{html.escape(mod.__doc__.strip())}</p>')
        for name, (where, _) in sorted(syms.items(), key=lambda kv: list(syms).index(kv[0])):
            obj = mod
            try:
                for part in name.removeprefix(module + '.').split('.'): obj = getattr(obj, part)
            except AttributeError: continue
            short = name.removeprefix(module + '.')
            try: sig = str(inspect.signature(obj)) if callable(obj) else ''
            except (TypeError, ValueError): sig = ''
            doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)) else ''
            doc_page = where.partition('#')[0]                         # 'losses.html': nbdev drops the notebook's number
            page = page_of_doc.get(doc_page.removesuffix('.html'))
            source = f'<a href="{page}">{html.escape(page.removesuffix(".html"))}</a>' if page else html.escape(doc_page)
            parts.append(f'<div class="api-item" id="{html.escape(name)}"><code class="sig">{html.escape(short)}'
                         f'{html.escape(sig)}</code> <span class="source">({source})</span>'
                         + (f'<pre class="doc">{html.escape(doc)}</pre>' if doc else '') + '</div>')
    return '\n'.join(parts)

# ---- links and layout ----------------------------------------------------------------------------------------------
def fix_links(body:str, site_path:str, src:Path, page_of:dict[str, str], git_url:str) -> str:
    "Relative links of a page: to the page a repository file became, else to that file on GitHub."
    src_dir = posixpath.dirname(src.relative_to(ROOT).as_posix())
    here = posixpath.dirname(site_path)
    def fix(m):
        attr, url = m.group(1), m.group(2)
        if re.match(r'^(https?:|mailto:|data:|#)', url) or not url: return m.group(0)
        path, _, frag = url.partition('#')
        target = posixpath.normpath(posixpath.join(src_dir, path))
        if target in page_of: new = posixpath.relpath(page_of[target], here or '.')
        elif attr == 'src' and (ROOT / target).is_file(): new = posixpath.relpath(target, here or '.')   # copied beside
        else: new = f'{git_url}/blob/main/{target}'
        return f'{attr}="{new}{"#" + frag if frag else ""}"'
    return re.sub(r'\b(href|src)="([^"]*)"', fix, body)

def layout(title:str, body:str, site_path:str, nav:list[tuple[str, list[tuple[str, str]]]], mathjax:bool) -> str:
    up = '../' * site_path.count('/')
    links = []
    for section, items in nav:
        links.append(f'<h2>{section}</h2>')
        links += [f'<a href="{up}{p}"{" class=here" if p == site_path else ""}>{html.escape(t)}</a>' for p, t in items]
    math = (f"<script>window.MathJax = {{tex: {{inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], processEscapes: true}}}};</script>"
            f'<script src="{up}mathjax/tex-chtml.js" defer></script>') if mathjax else ''
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
            f'<title>{html.escape(title)} · vlsa</title><link rel="stylesheet" href="{up}site.css">{math}</head>\n'
            f'<body><nav><h1><a href="{up}index.html">vlsa</a></h1>{"".join(links)}</nav>\n<main>{body}</main></body></html>\n')

def build(out:Path, mathjax:Path|None=None, only:list[str]|None=None) -> list[Path]:
    "Write the site into `out` (emptied first); `only`: just these site pages (and the API page), for a quick build."
    git_url = settings().get('git_url', '').rstrip('/')
    todo = [p for p in pages() if only is None or p[0] in only]
    if mathjax is not None and not (Path(mathjax) / 'tex-chtml.js').exists():
        raise SystemExit(f'build_docs: {mathjax} holds no tex-chtml.js (make docs installs MathJax 3 from npm)')
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    page_of = {src.relative_to(ROOT).as_posix(): site for site, src, _ in todo}
    rendered = {}
    for site, src, section in todo:
        rendered[site] = (notebook_html if src.suffix == '.ipynb' else markdown_html)(src)
    page_of_doc = {re.sub(r'^\d+_', '', src.stem): site for site, src, _ in todo if src.suffix == '.ipynb'}
    rendered['api.html'] = ('API reference', api_html(page_of_doc))   # its links are site pages already
    nav = {}
    for site, src, section in todo: nav.setdefault(section, []).append((site, rendered[site][0]))
    nav = list(nav.items()) + [('Reference', [('api.html', 'API reference')])]
    written = []
    for site, (title, body) in rendered.items():
        src = next((s for p, s, _ in todo if p == site), None)
        if src is not None: body = fix_links(body, site, src, page_of, git_url)
        (out / site).parent.mkdir(parents=True, exist_ok=True)
        (out / site).write_text(layout(title, body, site, nav, mathjax is not None))
        written.append(out / site)
    for site, src, _ in todo:   # the images a markdown page shows by a relative path, copied beside the page
        if src.suffix == '.md':
            for rel in re.findall(r'!\[[^\]]*\]\(([^)\s]+)', src.read_text()):
                f = (src.parent / rel).resolve()
                if f.is_file() and ROOT in f.parents:
                    dest = out / f.relative_to(ROOT); dest.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, dest)
    (out / 'site.css').write_text(CSS)
    if mathjax is not None:
        for part in MATHJAX_FILES:
            s, d = Path(mathjax) / part, out / 'mathjax' / part
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(s, d) if s.is_dir() else shutil.copy2(s, d)
    return written

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='_docs', help='the site folder, emptied first (default: _docs)')
    p.add_argument('--mathjax', help="MathJax 3's es5 folder (node_modules/mathjax/es5); without it equations stay TeX")
    p.add_argument('--only', nargs='*', help='build only these pages (site paths such as index.html), for a quick look')
    a = p.parse_args(argv)
    written = build(Path(a.out), Path(a.mathjax) if a.mathjax else None, a.only)
    print(f'build_docs: {len(written)} pages in {a.out}/ (open {Path(a.out) / "index.html"})')
    return 0

if __name__ == '__main__': sys.exit(main())
