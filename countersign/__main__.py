from countersign.cli.main import main

main()
