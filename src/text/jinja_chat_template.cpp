// A model's own Jinja chat template (text/chat_template.h), rendered by the vendored minja
// (third_party/minja, Google, MIT). The parser and renderer are used directly, not minja's
// chat_template class: that class probes each template with trial renders when it is built (half
// a second for some, with messages on stderr) to decide on "polyfills" that rewrite conversations
// a template would not accept, and transformers renders the messages as given, so must we.
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <fstream>
#include <sstream>

#include <minja/minja.hpp>
#include <nlohmann/json.hpp>

#include "grpo/core/error.h"
#include "grpo/text/chat_template.h"

namespace fs = std::filesystem;

namespace grpo::text {

struct JinjaChatTemplate::Impl {
  std::string origin, source, bos_token, eos_token;
  std::shared_ptr<minja::TemplateNode> root;
};

JinjaChatTemplate::JinjaChatTemplate(const std::string& source, const std::string& bos_token,
                                     const std::string& eos_token, const std::string& origin)
    : impl_(std::make_unique<Impl>()) {
  impl_->origin = origin;
  impl_->source = source;
  impl_->bos_token = bos_token;
  impl_->eos_token = eos_token;
  try {
    // transformers' Jinja environment: trim_blocks and lstrip_blocks on, the trailing newline dropped
    impl_->root = minja::Parser::parse(source, {/*trim_blocks=*/true, /*lstrip_blocks=*/true,
                                                /*keep_trailing_newline=*/false});
  } catch (const std::exception& e) {
    fail("{}: the chat template does not parse as Jinja: {}", origin, e.what());
  }
}

JinjaChatTemplate::~JinjaChatTemplate() = default;

const std::string& JinjaChatTemplate::source() const { return impl_->source; }

std::string JinjaChatTemplate::apply(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                     std::optional<bool> enable_thinking) const {
  auto msgs = nlohmann::ordered_json::array();
  for (const auto& m : messages) msgs.push_back({{"role", m.role}, {"content", m.content}});
  try {
    auto ctx = minja::Context::make(nlohmann::ordered_json{{"messages", msgs},
                                                           {"add_generation_prompt", add_generation_prompt}});
    ctx->set("bos_token", impl_->bos_token);
    ctx->set("eos_token", impl_->eos_token);
    if (enable_thinking) ctx->set("enable_thinking", *enable_thinking);
    // transformers gives templates strftime_now(format): the local time (Llama 3's date line)
    ctx->set("strftime_now", minja::Value::callable([](const std::shared_ptr<minja::Context>&, minja::ArgumentsValue& args) {
      args.expectArgs("strftime_now", {1, 1}, {0, 0});
      const std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      std::ostringstream os;
      os << std::put_time(&local, args.args[0].get<std::string>().c_str());
      return minja::Value(os.str());
    }));
    return impl_->root->render(ctx);
  } catch (const std::exception& e) {
    fail("{}: rendering the chat template failed: {}", impl_->origin, e.what());
  }
}

std::unique_ptr<JinjaChatTemplate> JinjaChatTemplate::from_dir(const std::string& dir) {
  const fs::path base = fs::is_directory(dir) ? fs::path(dir) : fs::path(dir).parent_path();
  const fs::path cfg_path = base / "tokenizer_config.json";
  nlohmann::json cfg = nlohmann::json::object();
  if (fs::exists(cfg_path)) {
    std::ifstream is(cfg_path);
    cfg = nlohmann::json::parse(is, nullptr, false);
    GRPO_CHECK(!cfg.is_discarded() && cfg.is_object(), "{}: not a JSON object", cfg_path.string());
  }
  auto token = [&](const char* key) -> std::string {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return "";
    if (it->is_object() && it->contains("content")) return (*it)["content"].get<std::string>();
    return it->is_string() ? it->get<std::string>() : "";
  };
  std::string source, origin = cfg_path.string() + " (chat_template)";
  if (auto it = cfg.find("chat_template"); it != cfg.end() && !it->is_null()) {
    if (it->is_string()) {
      source = it->get<std::string>();
    } else {
      GRPO_CHECK(it->is_array(), "{}: 'chat_template' must be a string or a list of {{name, template}}, found {}",
                 cfg_path.string(), it->type_name());
      for (const auto& t : *it)
        if (t.is_object() && t.value("name", "") == "default" && t.contains("template")) source = t["template"];
      GRPO_CHECK(!source.empty(), "{}: 'chat_template' lists no template named 'default'", cfg_path.string());
    }
  } else if (fs::exists(base / "chat_template.jinja")) {
    std::ifstream is(base / "chat_template.jinja");
    std::stringstream ss;
    ss << is.rdbuf();
    source = ss.str();
    origin = (base / "chat_template.jinja").string();
  } else {
    return nullptr;
  }
  return std::make_unique<JinjaChatTemplate>(source, token("bos_token"), token("eos_token"), origin);
}

}  // namespace grpo::text
