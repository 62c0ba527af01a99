import sys

from services.segmenter.main import main

sys.exit(main())
