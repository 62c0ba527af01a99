import sys

from services.rewards.main import main

sys.exit(main())
