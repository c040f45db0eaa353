from edgeport.cli.app import main

main()
