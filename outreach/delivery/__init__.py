"""The path of a message: claim -> dispatch -> prepare -> compose -> send -> record;
then status callbacks and reconciliation."""
