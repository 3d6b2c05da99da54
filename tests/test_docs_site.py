"""The documentation site: built from the notebooks (`tools/build_docs.py`), then, under `make docs-check`, opened in
headless Chromium, where a component page must show a figure and a rendered equation."""
import importlib.util, os, shutil, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('build_docs', ROOT / 'tools' / 'build_docs.py')
build_docs = importlib.util.module_from_spec(spec); spec.loader.exec_module(build_docs)
COMPONENT = '13_losses.html'   # a component page whose notebook stores a figure and states its equations
from test_notebook_figures import COMPONENTS   # the component notebooks, each with its equations and figures

def test_a_quick_build_links_every_page_and_keeps_the_equations_for_mathjax(tmp_path):
    written = build_docs.build(tmp_path, only=['index.html', COMPONENT, 'results/index.html'])
    assert {p.name for p in written} >= {'index.html', COMPONENT, 'api.html'}
    page = (tmp_path / COMPONENT).read_text()
    assert '\\mathcal{L}_\\text{global}' in page                      # TeX left for MathJax, not mangled by markdown
    assert 'src="data:image/png;base64,' in page                       # the stored figure, inline
    assert '#| export' not in page and 'nbdev_export()' not in page    # what only nbdev reads is left out
    assert 'href="index.html"' in page and 'href="api.html"' in page
    api = (tmp_path / 'api.html').read_text()
    assert 'InfoNCE' in api and 'href="13_losses.html"' in api         # the reference names the defining notebook
    results = (tmp_path / 'results' / 'index.html').read_text()
    assert 'href="../index.html"' in results                           # pages one folder down link back up

SITE = ROOT / '_docs'
needs_browser = pytest.mark.skipif(not os.environ.get('VLSA_DOCS_CHECK'),
                                   reason='`make docs-check` runs it: it builds the site and installs Chromium and Playwright')

@needs_browser
def test_the_site_shows_a_figure_and_a_rendered_equation_in_chromium():
    from playwright.sync_api import sync_playwright
    assert (SITE / 'index.html').exists() and (SITE / 'mathjax' / 'tex-chtml.js').exists(), 'make docs builds the site first'
    shots = SITE / 'screenshots'; shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which('chromium'), args=['--no-sandbox'])
        page = browser.new_page(viewport={'width': 1280, 'height': 900})
        page.goto((SITE / 'index.html').as_uri())
        assert page.title().startswith('vlsa')
        assert page.locator(f'nav a[href="{COMPONENT}"]').count() == 1
        page.screenshot(path=str(shots / 'index.png'))
        page.goto((SITE / COMPONENT).as_uri())
        page.wait_for_selector('mjx-container', timeout=30_000)           # MathJax ran and typeset the TeX
        box = page.locator('mjx-container[display="true"]').first.bounding_box()
        assert box and box['width'] > 100 and box['height'] > 10, box
        assert not page.locator('mjx-merror').count(), 'MathJax reported a TeX error'
        loaded = page.eval_on_selector_all('main img', 'els => els.filter(e => e.complete && e.naturalWidth > 100).length')
        assert loaded >= 1, 'no figure was drawn'
        page.locator('main img').first.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / 'component.png'), full_page=False)
        for name in COMPONENTS:                                          # every component page: its equations typeset, its figures drawn
            page.goto((SITE / f'{name}.html').as_uri())
            page.wait_for_selector('mjx-container[display="true"]', timeout=30_000)
            assert not page.locator('mjx-merror').count(), f'{name}: MathJax reported a TeX error'
            assert page.eval_on_selector_all('main img', 'els => els.filter(e => e.complete && e.naturalWidth > 100).length') >= 1, name
        page.locator('main img').last.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / 'training.png'), full_page=False)   # the last page's last figure: a real run's curves
        browser.close()
