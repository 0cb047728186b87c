from kapokmq.cli import main

raise SystemExit(main())
