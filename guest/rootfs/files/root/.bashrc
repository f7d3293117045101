# Capsem guest root shell.
[ -r /etc/profile.d/capsem-agents.sh ] && . /etc/profile.d/capsem-agents.sh
PS1='\u@\h:\w\$ '
