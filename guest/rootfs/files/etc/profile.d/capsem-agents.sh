# Capsem guest: the agent CLIs run unattended inside the VM (the VM is the
# sandbox). Sourced by login shells; the same settings live in each CLI's own
# config files (/etc/claude-code, /etc/gemini-cli, /root/.codex, /root/.gemini).
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin
export LANG=C.UTF-8
export IS_SANDBOX=1
export DISABLE_AUTOUPDATER=1
export DISABLE_TELEMETRY=1
export DISABLE_ERROR_REPORTING=1
export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
export GEMINI_CLI_TRUST_WORKSPACE=true
alias claude='claude --dangerously-skip-permissions'
alias gemini='gemini --yolo'
alias codex='codex --dangerously-bypass-approvals-and-sandbox'
