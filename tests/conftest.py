import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))          # test factories
sys.path.insert(0, str(HERE.parent))   # runs/ and analyses/
