"""``python -m nets.checkpoint convert OLD.pth NEW.safetensors``: see ``nets.checkpoint.main``."""

import sys

from nets.checkpoint import main

sys.exit(main())
