from services.notifier.main import main

raise SystemExit(main())
