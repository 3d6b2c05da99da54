"""What every benchmark report carries: the machine, the commit, the date; written as JSON."""
import json, os, platform, subprocess
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_report(path, report: dict) -> Path:
    "Add machine, commit and date to `report` and write it as JSON to `path`."
    import torch
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report = {**report, 'machine': {'cpus': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
                                    'python': platform.python_version(), 'torch': torch.__version__,
                                    'platform': platform.platform()},
              'commit': commit, 'date': datetime.now(timezone.utc).strftime('%Y-%m-%d')}
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + '\n')
    print(f'wrote {path}')
    return path
