from rrm_server.cli import main

main()
