from fnagent.cli import main

main()
