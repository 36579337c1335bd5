from lethe.cli import main

raise SystemExit(main())
