from loopline.cli.app import main

main()
