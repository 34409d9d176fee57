from fnagent.cli import entry

entry()
