from cyclegan_cli.cli import main

main()
