"""Write the computed parts of data_cards/syncbench.md: the table of what each modality reveals.

The table is `vlsa.synth.reveal_table` over the ground truth of the cpu profile's train split (4,000 clips,
seed 0: specs and narration only, nothing rendered), between the card's `reveals` markers.
`python tools/render_data_card.py --check` exits 1 if the card is out of date."""
import re, sys
from pathlib import Path

from vlsa.synth import PROFILES, clip_record, plan, reveal_table, with_narration

CARD = Path(__file__).resolve().parents[1] / 'data_cards' / 'syncbench.md'
BEGIN, END = '<!-- reveals: written by tools/render_data_card.py -->', '<!-- /reveals -->'

def table(workers:int=2) -> str:
    "The reveal table; the narration is chosen by speaking it (eSpeak), so the clips are spread over `workers` processes."
    from concurrent.futures import ProcessPoolExecutor
    specs = plan({'train': PROFILES['cpu']['train']}, seed=0)
    with ProcessPoolExecutor(workers) as pool: specs = list(pool.map(with_narration, specs, chunksize=100))
    return reveal_table([clip_record(s, '', {}, []) for s in specs])

def render(card:str) -> str:
    if BEGIN not in card or END not in card: raise SystemExit(f'{CARD}: no {BEGIN} ... {END} block')
    return re.sub(re.escape(BEGIN) + '.*?' + re.escape(END), lambda m: f'{BEGIN}\n{table()}\n{END}', card, flags=re.S)

if __name__ == '__main__':
    old = CARD.read_text()
    new = render(old)
    if '--check' in sys.argv:
        if new != old: sys.exit(f'{CARD} is out of date: run python tools/render_data_card.py')
    else: CARD.write_text(new)
