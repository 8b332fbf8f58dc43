// Typed configuration. Each layer owns its config struct; a struct describes its fields once, in
// a `visit(ConfigVisitor&)` method (key, member, documentation, allowed range or choices). The same
// description drives every use: loading YAML with file/line/key errors, applying `--set` overrides,
// writing the resolved config into the run directory, and `--help`. YAML keys are exactly the
// field names.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace grpo::core {

/// Allowed range of a numeric field.
struct Bounds {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;  // true: lo itself is excluded
  bool hi_open = false;
  std::string describe() const;
  bool contains(double x) const;
};
inline Bounds any() { return {}; }
inline Bounds at_least(double lo) { return {lo}; }
inline Bounds positive() { return {0.0, std::numeric_limits<double>::infinity(), true, false}; }
inline Bounds between(double lo, double hi) { return {lo, hi}; }

/// Something that walks a config struct's fields. Sections nest.
class ConfigVisitor {
 public:
  virtual ~ConfigVisitor() = default;
  virtual void field(const char* key, bool& value, const char* doc) = 0;
  virtual void field(const char* key, int64_t& value, const char* doc, Bounds b) = 0;
  virtual void field(const char* key, double& value, const char* doc, Bounds b) = 0;
  /// choices empty: any string.
  virtual void field(const char* key, std::string& value, const char* doc,
                     const std::vector<std::string>& choices) = 0;
  /// A map from name to number (e.g. reward weights); `names` lists the valid names (empty: any).
  virtual void field(const char* key, std::map<std::string, double>& value, const char* doc,
                     const std::vector<std::string>& names) = 0;
  virtual void section(const char* key, const char* doc,
                       const std::function<void(ConfigVisitor&)>& body) = 0;

  // Convenience overloads.
  void field(const char* key, int64_t& v, const char* doc) { field(key, v, doc, any()); }
  void field(const char* key, double& v, const char* doc) { field(key, v, doc, any()); }
  void field(const char* key, std::string& v, const char* doc) { field(key, v, doc, {}); }
  template <class T>
  void section(const char* key, const char* doc, T& sub) {
    section(key, doc, [&sub](ConfigVisitor& v) { sub.visit(v); });
  }
};

/// A field stored as a T (an enum, a bool) and written as one of the names in `choices`: loading
/// checks the name and stores its value, dumping writes the value's name.
template <class T>
void choice_field(ConfigVisitor& v, const char* key, T& value, const char* doc,
                  const std::vector<std::pair<std::string, T>>& choices) {
  std::string name;
  std::vector<std::string> names;
  for (const auto& [n, x] : choices) {
    names.push_back(n);
    if (x == value && name.empty()) name = n;
  }
  v.field(key, name, doc, names);
  for (const auto& [n, x] : choices)
    if (n == name) value = x;
}

/// Where each key of a loaded config came from, to point later validation errors at the source.
class ConfigSource {
 public:
  /// "file.yaml:12" / "--set a.b=c" / "default" for a dotted key path.
  std::string where(const std::string& key) const;
  void record(const std::string& key, std::string where) { where_[key] = std::move(where); }

 private:
  std::map<std::string, std::string> where_;
};

/// Throws grpo::ConfigError "<where>: <key>: <message>".
[[noreturn]] void config_fail(const ConfigSource& src, const std::string& key,
                              const std::string& message);

/// Loads YAML text into a struct via its visit(). `name` is used in messages (usually the file
/// path). `overrides` are "dotted.key=value" strings applied on top (value parsed as YAML).
/// Unknown keys, wrong types and out-of-range values throw ConfigError naming file, line and key.
void load_config(const std::string& yaml_text, const std::string& name,
                 const std::vector<std::string>& overrides,
                 const std::function<void(ConfigVisitor&)>& visit, ConfigSource* source = nullptr);

/// Writes the struct as YAML (every key, with its documentation as comments).
std::string dump_config(const std::function<void(ConfigVisitor&)>& visit, bool with_docs = true);

/// Every number of a loaded struct in its Bounds (for structs filled without load_config, e.g. from
/// a config.json); throws ConfigError "<where>: <prefix>.<key>: ..." for the first one outside.
void check_bounds(const std::function<void(ConfigVisitor&)>& visit, const ConfigSource& src,
                  const std::string& prefix);

/// Every field of a config as "dotted.key" -> its value written as YAML (as dump_config writes it).
std::map<std::string, std::string> flatten_config(const std::function<void(ConfigVisitor&)>& visit);

/// One key whose value differs between two flattened configs ("" where a side lacks the key).
struct ConfigChange {
  std::string key, before, after;
};
/// The keys whose values differ, sorted by key.
std::vector<ConfigChange> diff_config(const std::map<std::string, std::string>& before,
                                      const std::map<std::string, std::string>& after);

/// Every key with its default, allowed values and meaning: plain text for --help, or Markdown
/// tables (one per section) for docs/configuration.md.
std::string describe_config(const std::function<void(ConfigVisitor&)>& visit, bool markdown = false);

/// Reads a whole file; throws grpo::Error naming the path when it cannot.
std::string read_file(const std::string& path);

}  // namespace grpo::core
