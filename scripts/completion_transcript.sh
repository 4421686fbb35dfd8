#!/usr/bin/env bash
# Prints what TAB offers for a few command lines, calling the completion function `distill -sc install=bash`
# registers as bash does (COMP_LINE, COMP_WORDS, ...). Usage: bash scripts/completion_transcript.sh
eval "$(distill train -sc install=bash)"
complete -p distill
tab() {
  COMP_LINE="$1"; COMP_POINT=${#1}; read -ra COMP_WORDS <<< "$1"
  [[ "$1" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  COMPREPLY=()
  hydra_bash_completion
  printf '$ %s<TAB>\n' "$1"; printf '  %s\n' "${COMPREPLY[@]}"
}
tab "distill tr"
tab "distill train stu"
tab "distill train student=mob"
tab "distill train trainer.ep"
