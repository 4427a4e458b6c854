"""What the tests share (tests/helpers/): the repository root here; a subprocess wrapper
(shell.py), a scratch copy of the project (project.py), the simulated Hugging Face hub of
redwood_attn_2l (redwood_hub.py) and a stand-in second device (fake_device.py).

Imported as `from tests.helpers... import ...` (pyproject's pytest `pythonpath = ["."]`); no
module here is named test_*, so pytest collects none of them."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
