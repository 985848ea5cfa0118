// libyaml (Debian libyaml-dev), the YAML 1.1 parser the config reader composes nodes from.
#include <yaml.h>
