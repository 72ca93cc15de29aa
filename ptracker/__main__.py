from ptracker.cli import main

raise SystemExit(main())
