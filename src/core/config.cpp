// YAML <-> config structs through ConfigVisitor. Errors carry "file:line:col" of the offending
// node (yaml-cpp marks), or the --set override that introduced it.
#include "grpo/core/config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "grpo/core/error.h"

namespace grpo::core {

std::string Bounds::describe() const {
  bool has_lo = std::isfinite(lo), has_hi = std::isfinite(hi);
  if (has_lo && has_hi)
    return fmt::format("{}{}, {}{}", lo_open ? "(" : "[", lo, hi, hi_open ? ")" : "]");
  if (has_lo) return fmt::format("{} {}", lo_open ? ">" : ">=", lo);
  if (has_hi) return fmt::format("{} {}", hi_open ? "<" : "<=", hi);
  return "any finite number";
}

bool Bounds::contains(double x) const {
  if (!std::isfinite(x)) return false;  // no key has a use for infinity or NaN
  if (lo_open ? !(x > lo) : !(x >= lo)) return false;
  if (hi_open ? !(x < hi) : !(x <= hi)) return false;
  return true;
}

std::string ConfigSource::where(const std::string& key) const {
  auto it = where_.find(key);
  return it == where_.end() ? std::string("default") : it->second;
}

void config_fail(const ConfigSource& src, const std::string& key, const std::string& message) {
  throw ConfigError(fmt::format("{}: {}: {}", src.where(key), key, message));
}

std::string read_file(const std::string& path) {
  GRPO_CHECK(!std::filesystem::is_directory(path), "'{}' is a directory, not a file", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '{}': {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

std::string join_key(const std::string& prefix, const char* key) {
  return prefix.empty() ? std::string(key) : prefix + "." + key;
}

std::string describe_node(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "nothing (null)";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Scalar: return fmt::format("'{}'", n.Scalar());
    default: return "an undefined value";
  }
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Loads one section (a YAML map, or an absent/null node meaning "all defaults").
class Loader : public ConfigVisitor {
 public:
  Loader(YAML::Node node, std::string prefix, const std::string& name,
         const std::map<std::string, std::string>& overridden, ConfigSource& src)
      : node_(std::move(node)), prefix_(std::move(prefix)), name_(name),
        overridden_(overridden), src_(src) {}

  using ConfigVisitor::field;
  using ConfigVisitor::section;

  void field(const char* key, bool& value, const char* doc) override {
    auto opt = child(key);
    if (!opt) return;
    const YAML::Node& n = *opt;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, value))
      bad(key, n, "expected true or false");
  }
  void field(const char* key, int64_t& value, const char* doc, Bounds b) override {
    auto opt = child(key);
    if (!opt) return;
    const YAML::Node& n = *opt;
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v))
      bad(key, n, "expected an integer" + range_text(b));
    if (!b.contains(static_cast<double>(v))) bad(key, n, "expected an integer" + range_text(b));
    value = v;
  }
  void field(const char* key, double& value, const char* doc, Bounds b) override {
    auto opt = child(key);
    if (!opt) return;
    const YAML::Node& n = *opt;
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v))
      bad(key, n, "expected a number" + range_text(b));
    if (!b.contains(v)) bad(key, n, "expected a number" + range_text(b));
    value = v;
  }
  void field(const char* key, std::string& value, const char* doc,
             const std::vector<std::string>& choices) override {
    auto opt = child(key);
    if (!opt) return;
    const YAML::Node& n = *opt;
    if (!n.IsScalar()) bad(key, n, "expected a string" + choices_text(choices));
    if (!choices.empty() && std::find(choices.begin(), choices.end(), n.Scalar()) == choices.end())
      bad(key, n, "expected" + choices_text(choices));
    value = n.Scalar();
  }
  void field(const char* key, std::map<std::string, double>& value, const char* doc,
             const std::vector<std::string>& names) override {
    auto opt = child(key);
    if (!opt) return;
    const YAML::Node& n = *opt;
    if (!n.IsMap()) bad(key, n, "expected a map of name: number");
    std::map<std::string, double> out;
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string name = it->first.Scalar();
      std::string sub = join_key(join_key(prefix_, key), name.c_str());
      record(sub, it->second);
      if (!names.empty() && std::find(names.begin(), names.end(), name) == names.end())
        config_fail(src_, sub, fmt::format("unknown name '{}'; expected one of: {}", name,
                                           fmt::join(names, ", ")));
      double v = 0;
      if (!it->second.IsScalar() || !YAML::convert<double>::decode(it->second, v) ||
          !std::isfinite(v))
        config_fail(src_, sub, fmt::format("expected a number, found {}",
                                           describe_node(it->second)));
      out[name] = v;
    }
    value = std::move(out);
  }
  void section(const char* key, const char* doc,
               const std::function<void(ConfigVisitor&)>& body) override {
    auto n = child(key);
    std::string path = join_key(prefix_, key);
    if (n && !n->IsMap() && !n->IsNull()) bad(key, *n, "expected a section (a map of keys)");
    Loader sub(n && n->IsMap() ? *n : YAML::Node(YAML::NodeType::Undefined), path, name_,
               overridden_, src_);
    body(sub);
    sub.check_unknown();
  }

  // keys that were replaced, and by what
  inline static const std::map<std::string, std::string> kRenamed = {
      {"rollout.batch_size",
       "the rollout engine replaced it with 'rollout.max_running' (sequences decoding at once) and "
       "'rollout.kv_cache_bytes' (the KV pool's size)"},
  };

  void check_unknown() {
    if (!node_.IsDefined() || !node_.IsMap()) return;
    for (auto it = node_.begin(); it != node_.end(); ++it) {
      std::string k = it->first.Scalar();
      if (seen_.count(k)) continue;
      std::string path = join_key(prefix_, k.c_str());
      record(path, it->first);
      std::string best;
      size_t best_d = 3;
      for (const auto& s : seen_all_) {
        size_t d = edit_distance(k, s);
        if (d < best_d) best_d = d, best = s;
      }
      std::string hint = best.empty() ? fmt::format("known keys here: {}", fmt::join(seen_all_, ", "))
                                      : fmt::format("did you mean '{}'?", best);
      if (auto r = kRenamed.find(path); r != kRenamed.end()) hint = r->second;
      config_fail(src_, path, "unknown key; " + hint);
    }
  }

 private:
  // The value under `key`, or nothing when the key is absent (the default stays).
  std::optional<YAML::Node> child(const char* key) {
    seen_all_.push_back(key);
    if (!node_.IsDefined() || !node_.IsMap()) return std::nullopt;
    const YAML::Node& cn = node_;
    YAML::Node n = cn[key];
    if (!n.IsDefined()) return std::nullopt;
    seen_.insert(key);
    record(join_key(prefix_, key), n);
    return n;
  }
  void record(const std::string& path, const YAML::Node& n) {
    // a key set by --set, or inside a section a --set replaced (`--set 'grpo={group_size: 0}'`)
    auto it = overridden_.find(path);
    for (size_t dot = path.rfind('.'); it == overridden_.end() && dot != std::string::npos;
         dot = dot == 0 ? std::string::npos : path.rfind('.', dot - 1))
      it = overridden_.find(path.substr(0, dot));
    if (it != overridden_.end()) {
      src_.record(path, "--set " + it->second);
    } else {
      auto m = n.Mark();
      src_.record(path, m.is_null() ? name_ : fmt::format("{}:{}:{}", name_, m.line + 1, m.column + 1));
    }
  }
  [[noreturn]] void bad(const char* key, const YAML::Node& n, const std::string& expected) {
    config_fail(src_, join_key(prefix_, key),
                fmt::format("{}, found {}", expected, describe_node(n)));
  }
  static std::string range_text(const Bounds& b) {
    std::string d = b.describe();
    return d == "any number" ? "" : " in " + d;
  }
  static std::string choices_text(const std::vector<std::string>& c) {
    return c.empty() ? "" : fmt::format(" one of: {}", fmt::join(c, ", "));
  }

  YAML::Node node_;
  std::string prefix_;
  const std::string& name_;
  const std::map<std::string, std::string>& overridden_;
  ConfigSource& src_;
  std::set<std::string> seen_;
  std::vector<std::string> seen_all_;
};

// YAML maps keep every entry of a repeated key and lookups see only the first, so a repeated key
// would silently lose its later value: it is an error, naming both places.
void check_duplicate_keys(const YAML::Node& n, const std::string& name, const std::string& prefix) {
  if (n.IsSequence())
    for (const auto& item : n) check_duplicate_keys(item, name, prefix);
  if (!n.IsMap()) return;
  std::map<std::string, YAML::Mark> seen;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string key = it->first.IsScalar() ? it->first.Scalar() : std::string();
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    const YAML::Mark m = it->first.Mark();
    if (auto [at, fresh] = seen.emplace(key, m); !fresh)
      throw ConfigError(fmt::format("{}:{}:{}: {}: the key appears twice (first at line {}); keep one",
                                    name, m.line + 1, m.column + 1, path, at->second.line + 1));
    check_duplicate_keys(it->second, name, path);
  }
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) out.push_back(cur), cur.clear();
    else cur += c;
  }
  out.push_back(cur);
  return out;
}

void set_path(YAML::Node node, const std::vector<std::string>& parts, size_t i,
              const YAML::Node& value, const std::string& text) {
  if (i + 1 == parts.size()) {
    node[parts[i]] = value;
    return;
  }
  YAML::Node child = node[parts[i]];
  if (!child.IsDefined() || child.IsNull()) {
    node[parts[i]] = YAML::Node(YAML::NodeType::Map);
    child = node[parts[i]];
  } else if (!child.IsMap()) {
    throw ConfigError(fmt::format("--set {}: '{}' is not a section", text, parts[i]));
  }
  set_path(child, parts, i + 1, value, text);
}

std::string yaml_scalar(const std::string& s) {
  YAML::Emitter e;
  e << YAML::DoubleQuoted << s;
  return e.c_str();
}

std::string number_text(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".einf") == std::string::npos) s += ".0";
  return s;
}

// Writes YAML (dump) or a key table (describe).
class Writer : public ConfigVisitor {
 public:
  Writer(std::string& out, bool docs, bool table, bool markdown = false, std::string prefix = "",
         int indent = 0)
      : out_(out), docs_(docs), table_(table), markdown_(markdown), prefix_(std::move(prefix)),
        indent_(indent) {}
  using ConfigVisitor::field;
  using ConfigVisitor::section;
  void field(const char* key, bool& v, const char* doc) override {
    emit(key, v ? "true" : "false", "bool", doc);
  }
  void field(const char* key, int64_t& v, const char* doc, Bounds b) override {
    emit(key, std::to_string(v), "integer " + b.describe(), doc);
  }
  void field(const char* key, double& v, const char* doc, Bounds b) override {
    emit(key, number_text(v), "number " + b.describe(), doc);
  }
  void field(const char* key, std::string& v, const char* doc,
             const std::vector<std::string>& choices) override {
    emit(key, yaml_scalar(v),
         choices.empty() ? "string" : fmt::format("one of {}", fmt::join(choices, "|")), doc);
  }
  void field(const char* key, std::map<std::string, double>& v, const char* doc,
             const std::vector<std::string>& names) override {
    std::vector<std::string> items;
    for (auto& [k, x] : v) items.push_back(fmt::format("{}: {}", k, number_text(x)));
    emit(key, fmt::format("{{{}}}", fmt::join(items, ", ")),
         names.empty() ? "map name: number"
                       : fmt::format("map of ({}): number", fmt::join(names, "|")),
         doc);
  }
  void section(const char* key, const char* doc,
               const std::function<void(ConfigVisitor&)>& body) override {
    if (markdown_) {
      out_ += fmt::format("\n### `{}`: {}\n\n| key | default | allowed | meaning |\n| --- | --- | --- | --- |\n",
                          join_key(prefix_, key), doc);
    } else if (!table_) {
      if (docs_ && doc && *doc) out_ += fmt::format("{:{}}# {}\n", "", indent_, doc);
      out_ += fmt::format("{:{}}{}:\n", "", indent_, key);
    }
    Writer sub(out_, docs_, table_, markdown_, join_key(prefix_, key), indent_ + 2);
    body(sub);
  }

 private:
  void emit(const char* key, const std::string& value, const std::string& type, const char* doc) {
    if (markdown_) {
      std::string d = doc;
      for (size_t p = d.find('|'); p != std::string::npos; p = d.find('|', p + 2)) d.replace(p, 1, "\\|");
      std::string t = type;
      for (size_t p = t.find('|'); p != std::string::npos; p = t.find('|', p + 2)) t.replace(p, 1, "\\|");
      out_ += fmt::format("| `{}` | `{}` | {} | {} |\n", key, value, t, d);
    } else if (table_) {
      out_ += fmt::format("  {:<34} {:<22} {}\n      ({})\n", join_key(prefix_, key), value, doc, type);
    } else if (docs_) {
      out_ += fmt::format("{:{}}{}: {}  # {}\n", "", indent_, key, value, doc);
    } else {
      out_ += fmt::format("{:{}}{}: {}\n", "", indent_, key, value);
    }
  }
  std::string& out_;
  bool docs_, table_, markdown_;
  std::string prefix_;
  int indent_;
};

// Every field as "dotted.key" -> its value as dump_config writes it.
class Flattener : public ConfigVisitor {
 public:
  Flattener(std::map<std::string, std::string>& out, std::string prefix) : out_(out), prefix_(std::move(prefix)) {}
  using ConfigVisitor::field;
  using ConfigVisitor::section;
  void field(const char* key, bool& v, const char*) override { put(key, v ? "true" : "false"); }
  void field(const char* key, int64_t& v, const char*, Bounds) override { put(key, std::to_string(v)); }
  void field(const char* key, double& v, const char*, Bounds) override { put(key, number_text(v)); }
  void field(const char* key, std::string& v, const char*, const std::vector<std::string>&) override {
    put(key, yaml_scalar(v));
  }
  void field(const char* key, std::map<std::string, double>& v, const char*,
             const std::vector<std::string>&) override {
    std::vector<std::string> items;
    for (auto& [k, x] : v) items.push_back(fmt::format("{}: {}", k, number_text(x)));
    put(key, fmt::format("{{{}}}", fmt::join(items, ", ")));
  }
  void section(const char* key, const char*, const std::function<void(ConfigVisitor&)>& body) override {
    Flattener sub(out_, join_key(prefix_, key));
    body(sub);
  }

 private:
  void put(const char* key, std::string text) { out_[join_key(prefix_, key)] = std::move(text); }
  std::map<std::string, std::string>& out_;
  std::string prefix_;
};

// Checks each number against its Bounds.
class BoundsChecker : public ConfigVisitor {
 public:
  BoundsChecker(const ConfigSource& src, std::string prefix) : src_(src), prefix_(std::move(prefix)) {}
  using ConfigVisitor::field;
  using ConfigVisitor::section;
  void field(const char*, bool&, const char*) override {}
  void field(const char* key, int64_t& v, const char*, Bounds b) override {
    if (!b.contains(double(v))) bad(key, fmt::format("expected an integer in {}, found {}", b.describe(), v));
  }
  void field(const char* key, double& v, const char*, Bounds b) override {
    if (!b.contains(v)) bad(key, fmt::format("expected a number in {}, found {}", b.describe(), v));
  }
  void field(const char*, std::string&, const char*, const std::vector<std::string>&) override {}
  void field(const char*, std::map<std::string, double>&, const char*, const std::vector<std::string>&) override {}
  void section(const char* key, const char*, const std::function<void(ConfigVisitor&)>& body) override {
    BoundsChecker sub(src_, join_key(prefix_, key));
    body(sub);
  }


 private:
  // at the key's place, or its section's (a config.json records only "model")
  [[noreturn]] void bad(const char* key, const std::string& message) const {
    const std::string k = join_key(prefix_, key);
    std::string where = src_.where(k);
    for (std::string p = prefix_; where == "default" && !p.empty(); p.resize(p.rfind('.') == std::string::npos ? 0 : p.rfind('.')))
      where = src_.where(p);
    throw ConfigError(fmt::format("{}: {}: {}", where, k, message));
  }
  const ConfigSource& src_;
  std::string prefix_;
};

}  // namespace

void check_bounds(const std::function<void(ConfigVisitor&)>& visit, const ConfigSource& src,
                  const std::string& prefix) {
  BoundsChecker c(src, prefix);
  visit(c);
}

std::map<std::string, std::string> flatten_config(const std::function<void(ConfigVisitor&)>& visit) {
  std::map<std::string, std::string> out;
  Flattener f(out, "");
  visit(f);
  return out;
}

std::vector<ConfigChange> diff_config(const std::map<std::string, std::string>& before,
                                      const std::map<std::string, std::string>& after) {
  std::vector<ConfigChange> out;
  for (const auto& [key, value] : after) {
    auto it = before.find(key);
    if (it == before.end()) out.push_back({key, "", value});
    else if (it->second != value) out.push_back({key, it->second, value});
  }
  for (const auto& [key, value] : before)
    if (!after.count(key)) out.push_back({key, value, ""});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
  return out;
}

void load_config(const std::string& yaml_text, const std::string& name,
                 const std::vector<std::string>& overrides,
                 const std::function<void(ConfigVisitor&)>& visit, ConfigSource* source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}:{}:{}: not valid YAML: {}", name, e.mark.line + 1,
                                  e.mark.column + 1, e.msg));
  }
  if (root.IsNull() || !root.IsDefined()) root = YAML::Node(YAML::NodeType::Map);
  check_duplicate_keys(root, name, "");
  if (!root.IsMap())
    throw ConfigError(fmt::format("{}: expected a map of sections at the top level, found {}",
                                  name, describe_node(root)));
  std::map<std::string, std::string> overridden;  // key -> the whole "--set key=value" text
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError(fmt::format("--set {}: expected key.path=value", o));
    std::string key = o.substr(0, eq), text = o.substr(eq + 1);
    YAML::Node value;
    try {
      value = YAML::Load(text);
    } catch (const YAML::Exception& e) {
      throw ConfigError(fmt::format("--set {}: value is not valid YAML: {}", o, e.msg));
    }
    auto parts = split(key, '.');
    for (auto& p : parts)
      if (p.empty()) throw ConfigError(fmt::format("--set {}: empty key component", o));
    check_duplicate_keys(value, "--set " + o, key);
    set_path(root, parts, 0, value, o);
    overridden[key] = o;
  }
  ConfigSource local;
  ConfigSource& src = source ? *source : local;
  Loader top(root, "", name, overridden, src);
  visit(top);
  top.check_unknown();
}

std::string dump_config(const std::function<void(ConfigVisitor&)>& visit, bool with_docs) {
  std::string out;
  Writer w(out, with_docs, false);
  visit(w);
  return out;
}

std::string describe_config(const std::function<void(ConfigVisitor&)>& visit, bool markdown) {
  std::string out;
  Writer w(out, true, true, markdown);
  visit(w);
  return out;
}

}  // namespace grpo::core
