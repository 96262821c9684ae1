from rnnclf.cli.app import main

main()
