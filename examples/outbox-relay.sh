#!/bin/sh
# The transactional outbox relay: follows a ledger's outbox table through the verified
# change stream and hands each event on exactly once, by journal index, across restarts.
#
#   examples/outbox-relay.sh LEDGER VKEY_FILE DELIVERED_FILE [TABLE]
#
# "Handing on" here is appending the event's line to DELIVERED_FILE; a real relay would
# publish to a queue and record the index in the same step. The file is also the relay's
# position: on start it resumes one past the last index delivered, so a restart neither
# skips nor repeats an event. Needs `graven` and `graven-verify` on the PATH and
# GRAVEN_SERVER (or the default http://127.0.0.1:7420). See docs/OUTBOX.md.
set -eu
ledger=$1
key=$2
delivered=$3
table=${4:-outbox}

index_of() { sed -n 's/^{"type":"revision","index":\([0-9]*\),.*/\1/p'; }

from=0
if [ -s "$delivered" ]; then
  from=$(( $(tail -n 1 "$delivered" | index_of) + 1 ))
fi

graven tail "$ledger" --from "$from" --table "$table" \
  | graven-verify stream --key "$key" \
  | while IFS= read -r event; do
      # Only revisions covered by a verified checkpoint reach this point.
      printf '%s\n' "$event" >> "$delivered"
    done
